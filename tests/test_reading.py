"""Reading real documents as people have them, and the command's behaviour around them (issue 14)."""

import json
import subprocess
import sys

import pytest

from colcade.app.chunking import split_passages
from colcade.app.cli import main
from colcade.app.documents import read_pages
from colcade.encoders import default_encoder


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_html_keeps_all_visible_text_and_drops_boilerplate(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><style>p {color: red}</style><script>var hidden = 1;</script></head><body>"
        "<nav>Home | About</nav><h5>Small heading</h5><div>Text in a div.</div>"
        "<dl><dt>Term</dt><dd>Its definition.</dd></dl><table><tr><th>Header cell</th><td>Data cell</td></tr></table>"
        "<p>A paragraph with <span>inline span text</span> and <a href='#'>a link</a>.</p><footer>Copyright</footer>"
        "</body></html>"
    )
    text = read_pages(page)[0][1]
    for kept in (
        "Small heading",
        "Text in a div.",
        "Its definition.",
        "Header cell",
        "Data cell",
        "A paragraph with inline span text and a link.",
    ):
        assert kept in text
    for dropped in ("hidden", "color: red", "Home | About", "Copyright"):
        assert dropped not in text
    assert "Small heading\n\nText in a div." in text  # blocks are paragraphs for the chunker


def test_binary_file_named_txt_is_skipped_with_a_message(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "real.txt").write_text("Glaciers are slow rivers of ice.")
    (docs / "blob.txt").write_bytes(bytes(range(256)) * 40)
    code, out, err = run(capsys, "index", str(docs), "--index", str(tmp_path / "idx"))
    assert code == 0 and "blob.txt" in err and "binary" in err
    assert "1 added" in out


def test_an_empty_file_is_reported_as_empty_not_added_every_run(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "real.txt").write_text("Glaciers are slow rivers of ice.")
    (docs / "empty.md").write_text("   \n")
    for expected in ("1 added", "0 added"):
        code, out, _ = run(capsys, "index", str(docs), "--index", str(tmp_path / "idx"))
        assert code == 0 and expected in out and "1 empty" in out


def test_a_typo_in_the_paths_leaves_no_index_behind(tmp_path, capsys):
    code, _, err = run(capsys, "index", str(tmp_path / "no-such-folder"), "--index", str(tmp_path / "new"))
    assert code == 1 and "does not exist" in err
    assert not (tmp_path / "new").exists()


def test_missing_index_hint_is_a_command(tmp_path, capsys):
    code, _, err = run(capsys, "search", str(tmp_path / "nothing"), "query")
    assert code == 1 and "colcade index" in err and "LateIndex" not in err


def test_max_tokens_past_the_model_limit_is_refused(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Some text.")
    code, _, err = run(capsys, "index", str(docs), "--index", str(tmp_path / "idx"), "--max-tokens", "1000")
    assert code == 1 and "256" in err


def test_another_encoder_for_an_existing_index_is_refused(tmp_path, capsys):
    from colcade import LateIndex, PrecomputedEncoder

    LateIndex.create(tmp_path / "idx", encoder=PrecomputedEncoder(dim=4)).close()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Some text.")
    code, _, err = run(capsys, "index", str(docs), "--index", str(tmp_path / "idx"), "--encoder", "default")
    assert code == 1 and "built with" in err


def test_version_compact_and_json_in_a_pipe(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("colcade ")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"n{i}.txt").write_text(f"Note {i} about glaciers and rivers of ice.")
    assert run(capsys, "index", str(docs), "--index", str(tmp_path / "idx"))[0] == 0
    (docs / "n0.txt").write_text("Changed note about deserts.")
    assert run(capsys, "index", str(docs), "--index", str(tmp_path / "idx"))[0] == 0
    code, out, _ = run(capsys, "compact", str(tmp_path / "idx"))
    assert code == 0 and "-> 1" in out and "1 deleted passages dropped" in out
    # `| head -c 10`: the reader goes away mid-output; no "Broken pipe" error, exit 0
    proc = subprocess.run(
        f"{sys.executable} -m colcade.app.cli search {tmp_path / 'idx'} glaciers --json | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "Broken pipe" not in proc.stderr and "Error" not in proc.stderr


def test_eval_survives_empty_documents_and_queries(tmp_path, capsys):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [
        {"_id": "1", "title": "", "text": "Glaciers are slow rivers of ice."},
        {"_id": "2", "title": "", "text": "   "},
        {"_id": "3", "title": "Deserts", "text": "Deserts get little rain."},
    ]
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    queries = [{"_id": "q1", "text": "rivers of ice"}, {"_id": "q2", "text": " "}]
    (beir / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t1\t1\n")
    code, out, err = run(capsys, "eval", str(beir), "--json")
    assert code == 0 and "1 empty documents left out" in err
    result = json.loads(out)
    assert result["passages"] == 2 and result["queries"] == 1 and result["ndcg@10"] == 1.0


def test_an_empty_text_is_named_by_its_id():
    from colcade import InvalidInputError, LateIndex, PrecomputedEncoder

    index = LateIndex.in_memory(encoder=PrecomputedEncoder(dim=4, document_fn=lambda t: [[[1.0] * 4]] * len(t)))
    with pytest.raises(InvalidInputError, match="'doc-471'"):
        index.add(["fine", " "], ids=["doc-470", "doc-471"])


SCRIPTS = {
    "chinese": "晚唐时期的诗人在长安城中写下了许多描写月亮和故乡的诗句这些诗句后来被编入各种选集之中" * 12,
    "japanese": "東京の朝は静かで駅のホームには通勤する人々が列を作って電車を待っていました" * 12,
    "arabic": "كانت المدينة القديمة مليئة بالأسواق والحدائق والمكتبات التي يزورها العلماء من كل مكان " * 20,
    "code": "def f(x):\n    return [y * 2 for y in range(x) if y % 3 == 0]  # a comment\n" * 40,
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_no_passage_exceeds_the_model_limit_in_any_script(script):
    encoder = default_encoder()
    passages = split_passages(SCRIPTS[script], max_tokens=encoder.max_length, count_tokens=encoder.count_tokens)
    assert len(passages) > 1
    assert max(encoder.count_tokens(p.text) for p in passages) <= encoder.max_length
    covered = "".join(p.text for p in passages)
    assert set(SCRIPTS[script].split()) <= set(covered.split()) or script in ("chinese", "japanese")


def test_eval_metrics_agree_with_ir_measures():
    ir_measures = pytest.importorskip("ir_measures")
    import random

    from colcade.app.eval import average_precision, mrr, ndcg, recall

    rng = random.Random(5)
    docs = [f"d{i}" for i in range(60)]
    run, qrels = {}, {}
    for q in range(40):
        qid = f"q{q}"
        run[qid] = rng.sample(docs, 30)
        qrels[qid] = {d: rng.choice([0, 1, 2]) for d in rng.sample(docs, 8)}
        qrels[qid][rng.choice(docs)] = 1  # every query has something relevant
    scored = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in run.items()}
    want = ir_measures.calc_aggregate(
        [ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.AP @ 100, ir_measures.R @ 100], qrels, scored
    )
    assert ndcg(run, qrels) == pytest.approx(want[ir_measures.nDCG @ 10], abs=1e-6)
    assert mrr(run, qrels) == pytest.approx(want[ir_measures.RR @ 10], abs=1e-6)
    assert average_precision(run, qrels) == pytest.approx(want[ir_measures.AP @ 100], abs=1e-6)
    assert recall(run, qrels) == pytest.approx(want[ir_measures.R @ 100], abs=1e-6)


def test_eval_writes_a_trec_run(tmp_path, capsys):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": str(i), "title": "", "text": t}) for i, t in enumerate(["ice rivers", "hot sand"]))
    )
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "glacier ice"}))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t0\t1\n")
    code, out, _ = run(capsys, "eval", str(beir), "--run", str(tmp_path / "run.trec"))
    assert code == 0 and "MRR@10" in out and "MAP@100" in out
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0].split() == ["q1", "Q0", "0", "1", "2", "colcade"] and len(lines) == 2


@pytest.mark.parametrize("columns", [80, 120])
def test_search_output_has_a_header_and_fits_the_terminal(tmp_path, columns):
    import os

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-rather-long-file-name-about-glaciers.txt").write_text(
        "Glaciers are slow rivers of ice that carve valleys over thousands of years. " * 4
    )
    (docs / "sand.txt").write_text("Deserts get very little rain and their dunes move with the wind.")
    assert main(["index", str(docs), "--index", str(tmp_path / "idx")]) == 0
    env = {**os.environ, "COLUMNS": str(columns)}
    proc = subprocess.run(
        [sys.executable, "-m", "colcade.app.cli", "search", str(tmp_path / "idx"), "rivers of ice", "-k", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines[0].split() == ["#", "score", "norm", "source", "text"]
    assert "Glaciers" in lines[1]
    assert all(len(line) <= columns for line in lines), [len(line) for line in lines]


def test_extractive_answers_do_not_repeat_a_sentence():
    from colcade import Hit
    from colcade.app.answer import extractive_answer

    shared = "The finally clause runs cleanup code whether an exception occurred or not."
    hits = [Hit(i, 1.0, f"{shared} Passage {i} says more.", {}, 0.1) for i in ("a", "b")]
    sentences = [s.text for s in extractive_answer("cleanup code after an exception", hits)]
    assert sentences.count(shared) == 1


def test_filters_match_relative_file_paths(tmp_path, capsys):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "report.txt").write_text("The quarterly report covers revenue.")
    (docs / "sub" / "notes.md").write_text("Notes on the quarterly revenue meeting.")
    assert run(capsys, "index", str(docs), "--index", str(tmp_path / "idx"))[0] == 0
    capsys.readouterr()
    for value, want in (("report.txt", "report.txt"), ("sub/notes.md", "notes.md")):
        code, out, _ = run(capsys, "search", str(tmp_path / "idx"), "revenue", "--filter", f"source={value}", "--json")
        hits = json.loads(out)["hits"]
        assert code == 0 and len(hits) == 1 and hits[0]["metadata"]["source"].endswith(want)
        assert hits[0]["metadata"]["file"] == value


def test_restructuredtext_is_read_as_text(tmp_path):
    doc = tmp_path / "guide.rst"
    doc.write_text("Install\n=======\n\nRun ``pip install colcade`` in a fresh environment.\n")
    assert "pip install colcade" in read_pages(doc)[0][1]


def test_word_documents_are_read_in_order_tables_included(tmp_path, capsys):
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Orchestra notes", level=1)
    document.add_paragraph("The violin has four strings and is played with a bow.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "instrument", "strings"
    table.cell(1, 0).text, table.cell(1, 1).text = "cello", "four"
    document.add_paragraph("Glaciers are rivers of ice.")
    path = tmp_path / "docs" / "notes.docx"
    path.parent.mkdir()
    document.save(str(path))
    ((page, text),) = read_pages(path)
    assert page == 1
    assert text.index("Orchestra notes") < text.index("violin") < text.index("cello | four") < text.index("Glaciers")
    code, _, _ = run(capsys, "index", str(path.parent), "--index", str(tmp_path / "idx"))
    assert code == 0
    code, out, _ = run(capsys, "search", str(tmp_path / "idx"), "which instrument has strings", "-k", "1", "--json")
    assert json.loads(out)["hits"][0]["metadata"]["file"] == "notes.docx"


def test_an_unreadable_folder_is_reported_and_its_passages_are_kept(tmp_path, capsys, monkeypatch):
    import os

    docs = tmp_path / "docs"
    (docs / "private").mkdir(parents=True)
    (docs / "open.txt").write_text("Glaciers are slow rivers of ice.")
    (docs / "private" / "notes.txt").write_text("The violin has four strings.")
    (docs / ".git").mkdir()
    (docs / ".git" / "HEAD.txt").write_text("hidden folders are not documents")
    idx = str(tmp_path / "idx")
    assert run(capsys, "index", str(docs), "--index", idx)[0] == 0
    assert json.loads(run(capsys, "info", idx, "--json")[1])["documents"] == 2  # .git was passed over
    private = str(docs / "private")
    if os.geteuid() != 0:
        os.chmod(private, 0)
    else:  # root lists any folder: make listing this one fail as it would for a user
        scandir = os.scandir

        def refuse(path=".", *rest):
            if os.fspath(path) == private:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return scandir(path, *rest)

        monkeypatch.setattr(os, "scandir", refuse)
    try:
        code, out, err = run(capsys, "index", str(docs), "--index", idx)
    finally:
        os.chmod(private, 0o755)
        monkeypatch.undo()
    assert code == 0
    assert "could not open 1 folder(s)" in err and "private" in err and "kept" in err
    assert "0 removed" in out and "the index holds 2 passages" in out  # not taken for deleted


@pytest.mark.skipif(__import__("shutil").which("tmux") is None, reason="needs tmux")
def test_the_screen_of_index_and_search_at_80_columns(tmp_path):
    """What a user sees in an 80-column terminal: one progress bar, a summary, a table that fits."""
    import os
    import shlex
    import time

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(24):  # enough files for the progress bar to show
        (docs / f"notes-about-a-rather-long-topic-name-{i:02d}.txt").write_text(
            f"Topic {i}. Glaciers are slow rivers of ice that carve valleys over thousands of years. " * 3
        )
    cli = f"{shlex.quote(sys.executable)} -m colcade.app.cli"
    idx = shlex.quote(str(tmp_path / "idx"))
    script = tmp_path / "session.sh"
    script.write_text(
        f"{cli} index {shlex.quote(str(docs))} --index {idx}\n"
        f"{cli} search {idx} 'rivers of ice' -k 3\necho SESSION-DONE\nsleep 600\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # the terminal's own size
    server = ["tmux", "-L", f"colcade-test-{os.getpid()}"]
    subprocess.run(
        [*server, "new-session", "-d", "-x", "80", "-y", "40", f"bash --noprofile --norc {script}"],
        env=env,
        check=True,
    )
    try:
        screen = ""
        deadline = time.monotonic() + 180
        while "SESSION-DONE" not in screen and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = subprocess.run(
                [*server, "capture-pane", "-p", "-J"], capture_output=True, text=True, check=True
            ).stdout
    finally:
        subprocess.run([*server, "kill-server"], check=False)
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    assert "SESSION-DONE" in lines, screen
    assert all(len(line) <= 80 for line in lines), "\n".join(line for line in lines if len(line) > 80)
    bars = [line for line in lines if line.startswith("indexing")]
    assert len(bars) == 1 and "100%" in bars[0] and "passages" in bars[0], screen  # one bar, redrawn in place
    assert any("24 added" in line for line in lines), screen
    header = next(i for i, line in enumerate(lines) if line.split() == ["#", "score", "norm", "source", "text"])
    rows = lines[header + 1 : header + 4]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"], screen  # one line a hit: nothing wrapped
    assert "Glaciers" in rows[0] or "rivers" in rows[0]


def test_a_folder_that_can_be_listed_but_not_entered_is_reported(tmp_path, monkeypatch):
    from pathlib import Path

    from colcade.app.documents import find_files

    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.txt").write_text("x")
    (tmp_path / "b.txt").write_text("y")
    is_file = Path.is_file

    def refuse(self):  # what stat() does in a folder with read but no execute permission
        if self.parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return is_file(self)

    monkeypatch.setattr(Path, "is_file", refuse)
    unreadable: list = []
    assert [p.name for p in find_files([tmp_path, tmp_path / "locked"], unreadable)] == ["b.txt"]
    assert unreadable == [(tmp_path / "locked").resolve()]  # once, though two roots reach it
