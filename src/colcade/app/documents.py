"""Reading files into text: .txt, .md and .rst as they are, .html through BeautifulSoup, .pdf through
pypdf, .docx through python-docx."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from colcade.errors import InvalidInputError
from colcade.optional import require

SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".docx"}  # .rst reads well as plain text


_BOILERPLATE = ["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg"]
_BLOCKS = [
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "th",
    "td",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "blockquote",
    "figcaption",
    "caption",
    "br",
    "hr",
]


def html_text(soup: Any) -> str:
    """All visible text of a page, one paragraph per block element (boilerplate dropped).

    Inline elements (``span``, ``a``, ``em``) stay inside their paragraph; headings become
    paragraphs of their own, so the chunker keeps them with the text that follows.
    """
    for tag in soup(_BOILERPLATE):
        tag.decompose()
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", soup.get_text()))
    return "\n\n".join(p for p in paragraphs if p)


def docx_text(document: Any) -> str:
    """A Word document's paragraphs and table cells, in document order, one block per paragraph."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    blocks = []
    for item in document.iter_inner_content():  # paragraphs and tables as they appear
        if isinstance(item, Paragraph):
            blocks.append(item.text)
        elif isinstance(item, Table):
            for row in item.rows:
                blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n\n".join(b for b in blocks if b.strip())


def read_pages(path: Path) -> list[tuple[int, str]]:
    """``(page number, text)`` of a file: one page for text and HTML, one per PDF page (from 1)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(
            f"{path}: unsupported file type {suffix!r}; colcade reads {', '.join(sorted(SUFFIXES))}"
        )
    reader = require("pypdf", '"colcade[cli]"', "reading PDF") if suffix == ".pdf" else None
    soup_module = require("bs4", '"colcade[cli]"', "reading HTML") if suffix in (".html", ".htm") else None
    docx_module = require("docx", '"colcade[cli]"', "reading Word files") if suffix == ".docx" else None
    try:
        if docx_module is not None:
            return [(1, docx_text(docx_module.Document(str(path))))]
        if reader is not None:
            PdfReader = reader.PdfReader
            return [(i + 1, page.extract_text() or "") for i, page in enumerate(PdfReader(path).pages)]
        data = path.read_bytes()
        raw = data.decode("utf-8", errors="replace")
        if b"\0" in data[:8192] or raw.count("\ufffd") > 0.1 * max(1, len(raw)):
            raise InvalidInputError(f"{path}: looks like a binary file, not text (skipped)")
        if soup_module is not None:
            return [(1, html_text(soup_module.BeautifulSoup(raw, "html.parser")))]
        return [(1, raw)]
    except InvalidInputError:
        raise
    except Exception as exc:  # unreadable, encrypted or malformed files
        raise InvalidInputError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from exc


def find_files(paths: list[Path], unreadable: list[Path] | None = None) -> list[Path]:
    """The readable files under ``paths`` (files as given, folders recursively), sorted.

    Hidden files and folders are passed over, and symbolic links to folders are not followed (a
    link back up would loop). A folder that cannot be listed (no permission) is appended to
    ``unreadable`` rather than stopping the walk: the caller says so, and must not take the files
    it could not see for deleted ones.
    """
    found: set[Path] = set()
    missed: list[Path] = []

    def skipped(error: OSError) -> None:
        where = Path(error.filename).resolve() if error.filename else None
        if where is not None and where not in missed:
            missed.append(where)

    for path in paths:
        try:
            if not path.exists():
                raise InvalidInputError(f"{path} does not exist")
            if path.is_file():
                found.add(path.resolve())
                continue
        except PermissionError as exc:
            raise InvalidInputError(f"{path}: permission denied (a folder above it cannot be opened)") from exc
        for folder, subfolders, names in os.walk(path, onerror=skipped):
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
            for name in names:
                file = Path(folder) / name
                if name.startswith(".") or file.suffix.lower() not in SUFFIXES:
                    continue
                try:
                    if file.is_file():
                        found.add(file.resolve())
                except PermissionError as exc:  # a folder that can be listed but not entered
                    skipped(PermissionError(exc.errno, exc.strerror, folder))
                    break
    if unreadable is not None:
        unreadable.extend(missed)
    return sorted(found)
