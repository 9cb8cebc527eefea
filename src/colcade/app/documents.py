"""Reading files into text: .txt and .md as they are, .html through BeautifulSoup, .pdf through pypdf."""

from __future__ import annotations

from pathlib import Path

from colcade.errors import InvalidInputError
from colcade.optional import require

SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


def read_pages(path: Path) -> list[tuple[int, str]]:
    """``(page number, text)`` of a file: one page for text and HTML, one per PDF page (from 1)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(
            f"{path}: unsupported file type {suffix!r}; colcade reads {', '.join(sorted(SUFFIXES))}"
        )
    reader = require("pypdf", '"colcade[cli]"', "reading PDF") if suffix == ".pdf" else None
    soup_module = require("bs4", '"colcade[cli]"', "reading HTML") if suffix in (".html", ".htm") else None
    try:
        if reader is not None:
            PdfReader = reader.PdfReader
            return [(i + 1, page.extract_text() or "") for i, page in enumerate(PdfReader(path).pages)]
        raw = path.read_bytes().decode("utf-8", errors="replace")
        if soup_module is not None:
            soup = soup_module.BeautifulSoup(raw, "html.parser")
            for tag in soup(["script", "style", "nav", "header", "footer"]):
                tag.decompose()
            blocks = (
                b.get_text(" ", strip=True)
                for b in soup.find_all(["p", "li", "h1", "h2", "h3", "h4", "pre", "td", "blockquote"])
            )
            text = "\n\n".join(b for b in blocks if b) or soup.get_text("\n", strip=True)
            return [(1, text)]
        return [(1, raw)]
    except InvalidInputError:
        raise
    except Exception as exc:  # unreadable, encrypted or malformed files
        raise InvalidInputError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from exc


def find_files(paths: list[Path]) -> list[Path]:
    """The readable files under ``paths`` (files as given, folders recursively), sorted."""
    found = set()
    for path in paths:
        if not path.exists():
            raise InvalidInputError(f"{path} does not exist")
        if path.is_file():
            found.add(path.resolve())
        else:
            found.update(
                p.resolve()
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
            )
    return sorted(found)
