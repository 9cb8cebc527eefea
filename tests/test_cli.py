"""The colcade command: every subcommand, incremental indexing, and bad input as one clear line."""

import json
import subprocess
import sys

import pytest

from colcade.app.answer import configured_llm
from colcade.app.cli import main


def pdf_bytes(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of text per page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "violin.txt").write_text("The violin is a bowed string instrument with four strings tuned in fifths.")
    (folder / "solar.md").write_text(
        "# Solar power\n\nSolar panels convert sunlight into electricity with photovoltaic cells."
    )
    (folder / "page.html").write_text(
        "<html><head><script>var x = 1;</script></head><body><p>Glaciers are slow rivers of ice.</p></body></html>"
    )
    (folder / "manual.pdf").write_bytes(
        pdf_bytes(["Chapter one covers installation.", "Chapter two explains the turbocharger."])
    )
    return folder


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_info(capsys, docs, tmp_path):
    idx = str(tmp_path / "idx")
    code, out, _ = run(capsys, "index", str(docs), "--index", idx)
    assert code == 0 and "4 added" in out
    code, out, _ = run(capsys, "search", idx, "turbocharger", "-k", "1", "--json")
    hit = json.loads(out)["hits"][0]
    assert hit["metadata"]["page"] == 2 and hit["metadata"]["source"].endswith("manual.pdf")
    assert [s["stage"] for s in json.loads(out)["stats"]] == ["lexical", "shortlist", "prefilter", "rerank", "fusion"]
    code, out, _ = run(capsys, "search", idx, "turbocharger", "-k", "1", "--no-hybrid", "--json")
    assert [s["stage"] for s in json.loads(out)["stats"]] == ["shortlist", "prefilter", "rerank"]
    for query, name in [("four strings", "violin.txt"), ("photovoltaic", "solar.md"), ("rivers of ice", "page.html")]:
        code, out, _ = run(capsys, "search", idx, query, "-k", "1")
        assert code == 0 and name in out.splitlines()[1]  # under the header
    code, out, _ = run(capsys, "search", idx, "instrument", "--filter", "page=2", "--json")
    assert {h["metadata"]["page"] for h in json.loads(out)["hits"]} == {2}
    code, out, _ = run(capsys, "search", idx, "turbocharger", "-k", "1", "--hybrid", "--json")
    found = json.loads(out)
    assert found["hits"][0]["metadata"]["page"] == 2 and found["stats"][-1]["stage"] == "fusion"
    code, out, _ = run(capsys, "info", idx, "--json")
    info = json.loads(out)
    assert info["documents"] == 5 and info["encoder"]["name"] == "all-MiniLM-L6-v2" and info["bytes_on_disk"] > 0
    assert info["bytes_in_ram"] > 0
    assert "documents  5" in run(capsys, "info", idx)[1]


def test_reindexing_changes_only_what_changed(capsys, docs, tmp_path):
    idx = str(tmp_path / "idx")
    run(capsys, "index", str(docs), "--index", idx)
    assert "4 unchanged" in run(capsys, "index", str(docs), "--index", idx)[1]
    (docs / "violin.txt").write_text("The cello is a bowed string instrument, larger than the violin.")
    (docs / "page.html").unlink()
    (docs / "new.txt").write_text("Tides are caused by the moon's gravity.")
    code, out, _ = run(capsys, "index", str(docs), "--index", idx)
    assert "1 added, 1 updated, 1 removed, 2 unchanged" in out
    code, out, _ = run(capsys, "search", idx, "glaciers ice", "-k", "5", "--json")
    sources = [h["metadata"]["source"] for h in json.loads(out)["hits"]]
    assert not any(s.endswith("page.html") for s in sources)
    code, out, _ = run(capsys, "search", idx, "larger than the violin", "-k", "1", "--json")
    assert "cello" in json.loads(out)["hits"][0]["text"]


def test_long_files_are_split_with_overlap(capsys, tmp_path):
    (tmp_path / "long.txt").write_text(" ".join(f"Sentence {i} is about topic {i}." for i in range(400)))
    idx = str(tmp_path / "idx")
    run(capsys, "index", str(tmp_path / "long.txt"), "--index", idx, "--max-tokens", "60")
    out = json.loads(run(capsys, "search", idx, "topic 250", "-k", "3", "--json")[1])
    starts = sorted(h["metadata"]["start"] for h in out["hits"])
    assert len(out["hits"]) == 3 and starts[0] > 0


def test_ask_without_an_llm_is_extractive_and_says_so(capsys, docs, tmp_path, monkeypatch):
    for var in (
        "COLCADE_LLM_BASE_URL",
        "COLCADE_LLM_MODEL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "COLCADE_OLLAMA_MODEL",
    ):
        monkeypatch.delenv(var, raising=False)
    idx = str(tmp_path / "idx")
    run(capsys, "index", str(docs), "--index", idx)
    code, out, err = run(capsys, "ask", idx, "How many strings does a violin have?")
    assert code == 0 and "No LLM is configured" in err
    assert "four **strings**" in out and "**violin**" in out and "[violin.txt]" in out


def test_rag_chain_uses_the_llm_when_one_is_given(docs, tmp_path):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from colcade import LateIndex
    from langchain_colcade import ColcadeRetriever, rag_chain

    index = LateIndex.in_memory()
    index.add(["The violin has four strings."], metadatas=[{"source": "violin.txt"}])
    seen = {}

    def llm(prompt):
        seen["prompt"] = prompt.to_string()
        return "Four [violin.txt]"

    assert rag_chain(ColcadeRetriever(index=index, k=1), llm).invoke("How many strings?") == "Four [violin.txt]"
    assert "[violin.txt] The violin has four strings." in seen["prompt"]
    assert rag_chain(ColcadeRetriever(index=index), FakeListChatModel(responses=["ok"])).invoke("q") == "ok"


def test_a_configured_llm_without_its_package_is_a_clear_error(monkeypatch):
    pytest.importorskip("langchain_core")
    monkeypatch.setenv("COLCADE_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    if "langchain_openai" in sys.modules or __import__("importlib").util.find_spec("langchain_openai"):
        pytest.skip("langchain-openai is installed")
    with pytest.raises(Exception, match="pip install langchain-openai"):
        configured_llm()


def test_explain(capsys, docs, tmp_path):
    idx = str(tmp_path / "idx")
    run(capsys, "index", str(docs), "--index", idx)
    passage = json.loads(run(capsys, "search", idx, "violin strings", "-k", "1", "--no-hybrid", "--json")[1])["hits"][0]
    html = tmp_path / "explain.html"
    code, out, _ = run(capsys, "explain", idx, "violin strings", passage["id"], "--html", str(html))
    assert code == 0 and "violin -> violin" in out and "strings -> strings" in out
    score = float(out.split("MaxSim score ")[1].split()[0])
    assert score == pytest.approx(passage["score"], abs=0.01)  # the explanation adds up to the score
    assert "<table>" in html.read_text()


def test_eval_on_a_beir_collection(capsys, tmp_path):
    beir = tmp_path / "tiny"
    (beir / "qrels").mkdir(parents=True)
    docs = {
        "d1": "The violin has four strings.",
        "d2": "Solar panels make electricity.",
        "d3": "Glaciers are rivers of ice.",
    }
    (beir / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": "", "text": v}) for k, v in docs.items())
    )
    (beir / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in [("q1", "string instrument"), ("q2", "ice")])
    )
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    code, out, _ = run(capsys, "eval", str(beir), "--json")
    result = json.loads(out[out.index("{") :])
    assert (
        result["ndcg@10"] == pytest.approx(1.0)
        and result["fidelity@10"] == pytest.approx(1.0)
        and result["queries"] == 2
        and result["hybrid_ndcg@10"] == pytest.approx(1.0)
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "{tmp}/nowhere", "q"], "no index at"),
        (["index", "{tmp}/empty", "--index", "{tmp}/i2"], "no file could be read"),
        (["index", "{tmp}/missing-folder", "--index", "{tmp}/i3"], "does not exist"),
        (["search", "{idx}", "q", "--filter", "nokeyvalue"], "key=value"),
        (["search", "{idx}", "q", "-k", "0"], "k must be a positive integer"),
        (["index", "{tmp}/docs", "--index", "{tmp}/i4", "--encoder", "word2vec"], "unknown encoder"),
        (["explain", "{idx}", "q", "no-such-id"], "not in the index"),
        (["eval", "{tmp}"], "not a BEIR collection"),
    ],
)
def test_errors_are_one_line(capsys, docs, tmp_path, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    idx = tmp_path / "idx"
    main(["index", str(docs), "--index", str(idx)])
    capsys.readouterr()
    code, out, err = run(capsys, *[a.format(tmp=tmp_path, idx=idx) for a in argv])
    assert code == 1 and message in err
    assert err.count("\n") <= 2 and "Traceback" not in err


def test_verbose_shows_the_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "--verbose", "search", str(tmp_path / "nowhere"), "q")
    assert code == 1 and "Traceback" in err


def test_console_script_is_installed():
    proc = subprocess.run(["colcade", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "index" in proc.stdout and "demo" in proc.stdout


def test_demo_answers_from_the_right_topics():
    proc = subprocess.run(["colcade", "demo"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    answers = proc.stdout.split("Q: ")[1:]
    sources = [next(line for line in a.splitlines() if "sources:" in line) for a in answers]
    assert len(answers) == 3 and " try (" in sources[0] and " yield (" in sources[1]
    assert "finally" in answers[0] and "specialnames" in sources[2]
    assert "No LLM is configured" in proc.stdout
