"""The ``colcade`` command: index, search, ask, explain, eval, info, compact, export-qdrant, demo.

``search``, ``ask``, ``explain`` and ``info`` take an index folder or a Qdrant collection
(``qdrant://HOST:PORT/NAME``, ``qdrants://HOST/NAME``, ``qdrant-local:FOLDER/NAME``).

Errors are one line on stderr (exit status 1); ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from colcade.errors import ColcadeError, InvalidInputError
from colcade.optional import require


def _encoder(spec: str | None):
    from colcade.encoders import from_spec

    return from_spec(spec)


_OPENED: list[Any] = []  # indexes this command opened, closed when it ends


def _open(path: str):
    """A LateIndex folder, or a Qdrant collection (``qdrant://HOST:PORT/NAME``, ``qdrant-local:FOLDER/NAME``)."""
    from colcade.errors import IndexNotFoundError
    from colcade.locations import is_qdrant, open_index

    try:
        index = open_index(path)
    except IndexNotFoundError as exc:
        if is_qdrant(path):
            raise
        raise IndexNotFoundError(f"no index at {path}: make one with `colcade index FILES... --index {path}`") from exc
    _OPENED.append(index)
    return index


def _local_only(location: str, why: str) -> None:
    from colcade.locations import is_qdrant

    if is_qdrant(location):
        raise InvalidInputError(why)


def _filter(pairs: Sequence[str] | None) -> dict[str, Any] | None:
    """``key=value`` pairs (values read as JSON where they parse: numbers, true, null) joined by AND."""
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--filter takes key=value, but got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
        if key == "source" and isinstance(out[key], str) and not Path(out[key]).is_absolute():
            out["file"] = out.pop(key)  # `source=report.pdf`: the path as given, relative to its folder
    return out


def _label(hit) -> str:
    source = hit.metadata.get("source")
    if not source:
        return hit.id
    page = hit.metadata.get("page")
    return f"{Path(source).name}" + (f" p.{page}" if page and page != 1 else "")


def _open_or_create(path: Path, encoder: str | None):
    """Open the index at ``path`` (with ``encoder`` when given: another one is refused), or create it."""
    from colcade.errors import IndexExistsError
    from colcade.index import LateIndex

    chosen = _encoder(encoder)
    if encoder is not None and chosen is None:  # "default" named explicitly: hold the index to it
        from colcade.encoders import default_encoder

        chosen = default_encoder()
    if not (path / "manifest.json").exists():
        try:
            return LateIndex.create(path, encoder=chosen)
        except IndexExistsError:  # another process created it first
            pass
    return LateIndex.open(path, encoder=chosen)


def cmd_index(args: argparse.Namespace) -> int:
    from colcade.app.documents import find_files
    from colcade.app.ingest import ingest

    _local_only(
        args.index,
        "colcade index writes an index folder; to search the files on Qdrant, index them into a folder and copy "
        f"it across with `colcade export-qdrant FOLDER {args.index}` (it skips what is already there)",
    )
    path = Path(args.index)
    find_files([Path(p) for p in args.paths])  # a typo fails here, before an empty index is made
    index = _open_or_create(path, args.encoder)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # one summary line, not Python warnings
        warnings.simplefilter("always")
        report = ingest(
            index,
            [Path(p) for p in args.paths],
            max_tokens=args.max_tokens,
            overlap=args.overlap,
            on_error=lambda p, e: print(f"colcade: skipped {p}: {e}", file=sys.stderr),
        )
    if report.unreadable:
        more = len(report.unreadable) - 3
        shown = ", ".join(report.unreadable[:3]) + (f" and {more} more" if more > 0 else "")
        print(
            f"colcade: could not open {len(report.unreadable)} folder(s) ({shown}): their files were skipped, "
            "and passages already indexed from them are kept",
            file=sys.stderr,
        )
    if caught:
        print(f"colcade: {len(caught)} warning(s) while encoding; the first: {caught[0].message}", file=sys.stderr)
    print(
        f"{len(report.added)} added, {len(report.updated)} updated, {len(report.removed)} removed, "
        f"{len(report.unchanged)} unchanged"
        + (f", {len(report.empty)} empty" if report.empty else "")
        + " files\n"  # two lines: one would wrap in an 80-column terminal
        f"{report.passages} passages encoded in {time.perf_counter() - started:.1f} s; "
        f"the index holds {len(index)} passages"
    )
    if report.failed and not (report.added or report.updated or report.unchanged):
        raise InvalidInputError(f"no file could be read ({len(report.failed)} failed)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    index = _open(args.index)
    hits = index.search(
        args.query, k=args.k, filter=_filter(args.filter), exhaustive=args.exhaustive, hybrid=args.hybrid
    )
    if args.json:
        print(
            json.dumps(
                {
                    "hits": [
                        {
                            "id": h.id,
                            "score": h.score,
                            "normalized_score": h.normalized_score,
                            "text": h.text,
                            "metadata": h.metadata,
                        }
                        for h in hits
                    ],
                    "stats": [
                        {"stage": s.name, "in": s.candidates_in, "out": s.candidates_out, "ms": s.ms}
                        for s in hits.stats
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    if not hits:
        print("no results")
        return 0
    # One row a hit, fitted to the terminal (COLUMNS when set): the text column takes what is left.
    width = shutil.get_terminal_size((100, 24)).columns
    label_w = max(10, min(28, width // 4))
    text_w = max(10, width - (3 + 2 + 7 + 2 + 5 + 2 + label_w + 2))
    print(f"{'#':>3}  {'score':>7}  {'norm':>5}  {'source':<{label_w}}  text")
    for rank, hit in enumerate(hits, 1):
        snippet, label = _clip(" ".join(hit.text.split()), text_w), _clip(_label(hit), label_w)
        print(f"{rank:>3}  {hit.score:7.3f}  {hit.normalized_score:5.3f}  {label:<{label_w}}  {snippet}")
    print(_clip(hits.stages(), width))
    return 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def cmd_ask(args: argparse.Namespace) -> int:
    from colcade.app.answer import configured_llm, extractive_answer, highlight

    index = _open(args.index)
    llm = configured_llm(args.llm_model, args.llm_base_url)
    if llm is not None:
        lc = require("langchain_colcade", "langchain-colcade", "colcade ask with an LLM")
        answer = lc.rag_chain(lc.ColcadeRetriever(index=index, k=args.k), llm).invoke(args.question)
        print(answer)
        return 0
    hits = index.search(args.question, k=args.k)
    print(
        "No LLM is configured (set COLCADE_LLM_BASE_URL and COLCADE_LLM_MODEL, OPENAI_API_KEY, or "
        "COLCADE_OLLAMA_MODEL); the most relevant sentences of the retrieved passages:\n",
        file=sys.stderr,
    )
    color = sys.stdout.isatty()
    for sentence in extractive_answer(args.question, hits):
        print(f"- {highlight(sentence, color)}  [{_label(sentence.hit)}]")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from colcade.explain import explain

    explanation = explain(_open(args.index), args.query, args.id)
    if args.html:
        Path(args.html).write_text(explanation.to_html())
    print(explanation.to_text(color=sys.stdout.isatty()))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from colcade.app.eval import average_precision, fidelity, load_beir, mrr, ndcg, recall, write_trec_run
    from colcade.index import LateIndex

    collection = load_beir(args.beir_dir, split=args.split)
    index = LateIndex.in_memory(encoder=_encoder(args.encoder))
    ids, texts = collection.passages()
    kept = [(i, t) for i, t in zip(ids, texts) if t.strip()]
    if len(kept) < len(ids):
        print(f"colcade: {len(ids) - len(kept)} empty documents left out (they cannot match)", file=sys.stderr)
    ids, texts = [i for i, _ in kept], [t for _, t in kept]
    started = time.perf_counter()
    index.add(texts, ids=ids, show_progress=True)
    encode_s = time.perf_counter() - started
    queries = [(q, t) for q, t in collection.queries.items() if t.strip()][: args.max_queries or None]
    started = time.perf_counter()
    # The late-interaction cascade alone (its fidelity is to exhaustive MaxSim), then hybrid.
    cascade = {q: [h.id for h in index.search(text, k=100, hybrid=False)] for q, text in queries}
    search_ms = (time.perf_counter() - started) * 1e3 / max(1, len(queries))
    exhaustive = {q: [h.id for h in index.search(text, k=10, exhaustive=True)] for q, text in queries}
    hybrid = {q: [h.id for h in index.search(text, k=10, hybrid=True)] for q, text in queries}
    result = {
        "collection": collection.name,
        "passages": len(ids),
        "queries": len(queries),
        "ndcg@10": ndcg(cascade, collection.qrels),
        "mrr@10": mrr(cascade, collection.qrels),
        "map@100": average_precision(cascade, collection.qrels),
        "recall@100": recall(cascade, collection.qrels),
        "fidelity@10": fidelity(cascade, exhaustive),
        "exhaustive_ndcg@10": ndcg(exhaustive, collection.qrels),
        "hybrid_ndcg@10": ndcg(hybrid, collection.qrels),
        "encode_s": encode_s,
        "ms_per_query": search_ms,
    }
    if args.run_file:
        write_trec_run(cascade, args.run_file)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{collection.name}: {len(ids)} passages, {len(queries)} queries, encoder {index.encoder.name}")
        print(
            f"  nDCG@10 {result['ndcg@10']:.4f}   MRR@10 {result['mrr@10']:.4f}   MAP@100 {result['map@100']:.4f}   "
            f"Recall@100 {result['recall@100']:.4f}   "
            f"fidelity@10 {result['fidelity@10']:.4f} (exhaustive nDCG@10 {result['exhaustive_ndcg@10']:.4f})"
        )
        print(f"  hybrid (MaxSim + BM25) nDCG@10 {result['hybrid_ndcg@10']:.4f}")
        print(f"  encoding {encode_s:.1f} s, search {search_ms:.2f} ms/query (encoding the query included)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    index = _open(args.index)
    stats = index.stats()
    if stats.extra.get("backend") == "qdrant":
        info = {"documents": stats.documents, "encoder": stats.encoder, **stats.extra}
        if args.json:
            print(json.dumps(info, indent=2, default=str))
            return 0
        enc = stats.encoder
        print(
            f"Qdrant collection {stats.extra['collection']!r} at {stats.extra['where']}\n"
            f"  documents  {stats.documents:,} ({stats.segments} Qdrant segment(s), status {stats.extra['status']})\n"
            f"  encoder    {enc['name']} ({enc.get('kind')}, {enc['dim']} dims, fingerprint {enc['fingerprint']})"
        )
        return 0
    info = {
        "path": str(index.path),
        "documents": stats.documents,
        "deleted": stats.deleted,
        "tokens": stats.tokens,
        "segments": stats.segments,
        "encoder": stats.encoder,
        "bytes_on_disk": stats.bytes_on_disk,
        "bytes_in_ram": stats.extra.get("bytes_in_ram"),
        "shortlist": stats.shortlist,
        "storage": stats.extra.get("storage"),
        "codecs": stats.extra.get("codecs"),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    enc = stats.encoder
    print(
        f"{index.path}\n  documents  {stats.documents:,} ({stats.deleted:,} deleted, not yet compacted)\n"
        f"  tokens     {stats.tokens:,} in {stats.segments} segment(s)\n"
        f"  encoder    {enc['name']} ({enc.get('kind')}, {enc['dim']} dims, fingerprint {enc['fingerprint']})\n"
        f"  on disk    {stats.bytes_on_disk / 2**20:.1f} MiB"
        f" ({stats.bytes_on_disk / max(1, stats.tokens):.0f} bytes a token, {stats.extra.get('storage')} storage)\n"
        f"  in RAM     {(stats.extra.get('bytes_in_ram') or 0) / 2**20:.1f} MiB beyond the memory-mapped files\n"
        f"  shortlist  {stats.shortlist}"
    )
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    _local_only(args.index, "nothing to compact: Qdrant's optimizer removes deleted points on its own")
    index = _open(args.index)
    before = index.stats()
    started = time.perf_counter()
    index.compact()
    after = index.stats()
    print(
        f"{index.path}: {before.segments} segment(s) -> {after.segments}, {before.deleted:,} deleted passages dropped, "
        f"{before.bytes_on_disk / 2**20:.1f} -> {after.bytes_on_disk / 2**20:.1f} MiB "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


def cmd_export_qdrant(args: argparse.Namespace) -> int:
    from colcade.index import LateIndex
    from colcade.locations import is_qdrant, qdrant_parts

    if not is_qdrant(args.destination):
        raise InvalidInputError(
            f"the destination must be a Qdrant location (qdrant://HOST:PORT/NAME, qdrants://HOST/NAME or "
            f"qdrant-local:FOLDER/NAME), not {args.destination!r}"
        )
    require("qdrant_client", '"colcade[qdrant]"', "colcade export-qdrant")
    from colcade.qdrant import QdrantIndex

    source = _open(args.index)
    if not isinstance(source, LateIndex):
        raise InvalidInputError(f"the index to copy must be a colcade index folder, not {args.index!r}")
    where, collection = qdrant_parts(args.destination)
    target = QdrantIndex.open_or_create(
        where, collection, source.encoder, shard_number=args.shards, replication_factor=args.replication_factor
    )
    _OPENED.append(target)
    started = time.perf_counter()
    written = target.copy_from(source, batch_size=args.batch_size, show_progress=True, remove_missing=True)
    print(
        f"{written:,} passages sent (new or changed) in {time.perf_counter() - started:.1f} s; "
        f"{args.destination} holds {len(target):,}, as the index does"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from colcade.app import demo

    demo.run(sys.stdout, color=sys.stdout.isatty())
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="colcade", description="Late-interaction retrieval from the command line.")
    p.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action="version", version=f"colcade {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="index .txt, .md, .rst, .html and .pdf files (incremental)")
    s.add_argument("paths", nargs="+", help="files or folders")
    s.add_argument("--index", required=True, help="index folder (created if missing)")
    s.add_argument("--encoder", default=None, help="for a new index: default, colbert:NAME_OR_PATH or fastembed:MODEL")
    s.add_argument(
        "--max-tokens", type=int, default=None, help="passage length in the encoder's tokens (default: its limit)"
    )
    s.add_argument("--overlap", type=int, default=1, help="sentences or paragraphs repeated between passages")
    s.set_defaults(run=cmd_index)

    s = sub.add_parser("search", help="search an index")
    s.add_argument("index")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--filter", action="append", metavar="KEY=VALUE", help="metadata filter (repeatable)")
    s.add_argument("--exhaustive", action="store_true", help="score every passage exactly")
    s.add_argument(
        "--hybrid",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fuse MaxSim with BM25 from the index's lexical index (the default; --no-hybrid: MaxSim alone)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_search)

    s = sub.add_parser("ask", help="answer a question from an index (with an LLM when one is configured)")
    s.add_argument("index")
    s.add_argument("question")
    s.add_argument("-k", type=int, default=4)
    s.add_argument("--llm-model", default=None, help="model name, or ollama:NAME")
    s.add_argument("--llm-base-url", default=None, help="an OpenAI-compatible endpoint")
    s.set_defaults(run=cmd_ask)

    s = sub.add_parser("explain", help="show which query token matched which passage token")
    s.add_argument("index")
    s.add_argument("query")
    s.add_argument("id", help="passage id (see `colcade search --json`)")
    s.add_argument("--html", default=None, help="also write an HTML view to this file")
    s.set_defaults(run=cmd_explain)

    s = sub.add_parser("eval", help="nDCG@10, MRR@10, MAP@100, Recall@100 and cascade fidelity on a BEIR collection")
    s.add_argument("beir_dir")
    s.add_argument("--split", default="test")
    s.add_argument("--encoder", default=None)
    s.add_argument("--max-queries", type=int, default=None)
    s.add_argument("--json", action="store_true")
    s.add_argument("--run", dest="run_file", default=None, metavar="FILE", help="also write the ranking as a TREC run")
    s.set_defaults(run=cmd_eval)

    s = sub.add_parser("info", help="what an index holds")
    s.add_argument("index")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_info)

    s = sub.add_parser("compact", help="rewrite an index without deleted passages, as one segment")
    s.add_argument("index")
    s.set_defaults(run=cmd_compact)

    s = sub.add_parser("export-qdrant", help="make a Qdrant collection hold what an index holds (sends what changed)")
    s.add_argument("index", help="the index folder to copy")
    s.add_argument("destination", help="qdrant://HOST:PORT/NAME, qdrants://HOST/NAME or qdrant-local:FOLDER/NAME")
    s.add_argument("--shards", type=int, default=None, help="for a new collection on a cluster: its shard count")
    s.add_argument("--replication-factor", type=int, default=None, help="for a new collection: copies of each shard")
    s.add_argument("--batch-size", type=int, default=256, help="passages a request")
    s.set_defaults(run=cmd_export_qdrant)

    s = sub.add_parser("demo", help="index the Python language reference offline and answer questions")
    s.set_defaults(run=cmd_demo)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("colcade")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `colcade search ... --json | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("colcade: interrupted", file=sys.stderr)
        return 130
    except (ColcadeError, OSError, ValueError, KeyError) as exc:
        if args.verbose:
            traceback.print_exc()
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"colcade: error: {message}", file=sys.stderr)
        return 1
    finally:
        while _OPENED:  # a Qdrant local-mode folder stays locked until its client closes
            _OPENED.pop().close()


if __name__ == "__main__":
    sys.exit(main())
