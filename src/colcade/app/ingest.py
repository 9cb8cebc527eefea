"""Indexing folders of files, incrementally: only what changed is re-encoded.

Each passage records its file (``source``: the absolute path, its identity; ``file``: the path
relative to the folder given, for people and filters), PDF ``page``, character ``start`` and the
file's sha256. On a rerun, unchanged files are skipped, changed files have their passages replaced,
and files gone from the given paths have their passages deleted. A file is one
``LateIndex.replace``: its vectors stream to disk in batches (memory does not grow with the
file), and its old passages go out and the new ones come in with one commit. Each file's
write is checkpointed, so an interrupted run resumes inside the file where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from colcade.app.chunking import split_passages
from colcade.app.documents import find_files, read_pages
from colcade.encoders.base import sha256_file
from colcade.errors import InvalidInputError
from colcade.index import LateIndex


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # folders that could not be listed
    passages: int = 0


def _relative(path: Path, roots: list[Path]) -> str:
    """``path`` relative to the folder given that holds it (a file given as itself: its name)."""
    for root in roots:
        if root in path.parents:
            return path.relative_to(root).as_posix()
    return path.name


def ingest(
    index: LateIndex,
    paths: list[Path],
    max_tokens: int | None = None,
    overlap: int = 1,
    show_progress: bool | None = None,
    on_error: Callable[[Path, Exception], None] | None = None,
) -> IngestReport:
    """Bring ``index`` in line with the files under ``paths``; returns what changed.

    Passages are at most ``max_tokens`` tokens by the encoder's own tokenizer (default: its
    limit), overlapping by ``overlap`` sentences or paragraphs.
    """
    encoder = index.encoder
    count = getattr(encoder, "count_tokens", None)
    model_limit = getattr(encoder, "max_length", None) or getattr(encoder, "doc_maxlen", None)
    if max_tokens is not None and model_limit is not None and max_tokens > model_limit:
        raise InvalidInputError(
            f"max_tokens {max_tokens} is past {encoder.name}'s limit of {model_limit} tokens: the rest of each "
            f"passage would be cut off; use at most {model_limit}"
        )
    limit = max_tokens or model_limit or 256
    unreadable: list[Path] = []
    files = find_files(paths, unreadable)
    roots = [p.resolve() for p in paths]
    # source -> sha256 recorded in the index (one SQL query; no passage text is read)
    known: dict[str, str] = {
        src: sha or "" for src, sha in index.distinct("source", "sha256", filter={"source": {"$exists": True}})
    }
    report = IngestReport()
    # One bar for the whole run, by bytes read (known up front), with passages and their rate.
    total = sum(p.stat().st_size for p in files)
    disable = (total < 1 << 20 and len(files) < 20) if show_progress is None else not show_progress
    bar = tqdm(total=total, desc="indexing", unit="B", unit_scale=True, disable=disable)
    started = time.perf_counter()
    if files:
        _warm_up(encoder)
    for path in files:
        source = str(path)
        try:
            digest = sha256_file(path)
            if known.get(source) == digest:
                report.unchanged.append(source)
                continue
            texts, ids, metas = [], [], []
            for page, text in read_pages(path):
                for i, passage in enumerate(
                    split_passages(text, max_tokens=limit, overlap=overlap, count_tokens=count)
                ):
                    texts.append(passage.text)
                    ids.append(f"{source}#p{page}:{i}")
                    metas.append(
                        {
                            "source": source,
                            "file": _relative(path, roots),
                            "page": page,
                            "start": passage.start,
                            "sha256": digest,
                        }
                    )
            if not texts:  # an empty file (or one without text): recorded nowhere, reported as such
                if source in known:
                    index.replace({"source": source}, [])
                report.empty.append(source)
                continue
            settings = [source, digest, encoder.fingerprint if hasattr(encoder, "fingerprint") else "", limit, overlap]
            tag = "ingest-" + hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:24]
            index.replace({"source": source}, texts, ids=ids, metadatas=metas, checkpoint=tag, show_progress=False)
            (report.updated if source in known else report.added).append(source)
            report.passages += len(texts)
        except Exception as exc:  # one bad file does not stop the others
            report.failed.append((source, str(exc)))
            if on_error:
                on_error(path, exc)
        finally:  # the bar moves when a file is done, with the passages encoded so far and their rate
            bar.update(path.stat().st_size)
            rate = report.passages / max(1e-9, time.perf_counter() - started)
            bar.set_postfix_str(f"{report.passages:,} passages, {rate:.1f}/s")
    bar.close()
    report.unreadable = [str(p) for p in unreadable]
    present = {str(p) for p in files}
    for source in known:
        under_roots = any(Path(source) == r or r in Path(source).parents for r in roots)
        unseen = any(u in Path(source).parents for u in unreadable)  # hidden from us, not deleted
        if under_roots and not unseen and source not in present:
            index.replace({"source": source}, [])
            report.removed.append(source)
    if (report.added or report.updated) and index.stats().extra.get("refit_due"):
        index.compact()  # the index outgrew the codec its first files fitted: fit one to all of it
    return report


def _warm_up(encoder: Any) -> None:
    """Build the model before any file is read: building it briefly takes ~300 MB more than
    running it (the default encoder), which should not come on top of a large file's text."""
    try:
        encoder.encode_query("warm up")
    except InvalidInputError:  # an encoder without a query model (precomputed vectors)
        pass
