"""Splitting documents into passages that fit the encoder, with overlap.

Paragraphs are packed greedily into passages of at most ``max_tokens`` (counted with the
encoder's own tokenizer); a paragraph too long for one passage is split into sentences, and a
sentence too long into word runs. Each passage after the first repeats the last ``overlap``
units (sentences or paragraphs) of the one before it, so an answer that straddles a boundary
is whole in at least one passage.

>>> [c.text for c in split_passages("One two.\\n\\nThree four five.", max_tokens=3)]
['One two.', 'Three four five.']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from colcade.errors import InvalidInputError

_PARAGRAPHS = re.compile(r"\n\s*\n")
# Sentence ends: Latin punctuation and a space (not after a common abbreviation such as "Dr."),
# or the full-width marks of Chinese and Japanese, which take no space after them.
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？])")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Ms|Mrs|Prof|St|vs|etc|e\.g|i\.e|Fig|No|cf)\.$")


@dataclass(frozen=True)
class Passage:
    """A piece of a document: its text and where it starts and ends (character offsets)."""

    text: str
    start: int
    end: int


def _words(text: str) -> int:
    return len(text.split())


def _units(text: str, max_tokens: int, count: Callable[[str], int]) -> list[tuple[int, int]]:
    """Spans (start, end) of paragraphs, or of sentences / word runs where a paragraph is too long."""
    spans = []
    for para in _spans(text, _PARAGRAPHS, 0, len(text)):
        if count(text[para[0] : para[1]]) <= max_tokens:
            spans.append(para)
            continue
        for sent in _spans(text, _SENTENCES, *para):
            if count(text[sent[0] : sent[1]]) <= max_tokens:
                spans.append(sent)
                continue
            words = [m.span() for m in re.finditer(r"\S+", text[sent[0] : sent[1]])]
            run_start = 0
            for i in range(1, len(words) + 1):  # grow a run of words until it no longer fits
                if i == len(words) or count(text[sent[0] + words[run_start][0] : sent[0] + words[i][1]]) > max_tokens:
                    run = (sent[0] + words[run_start][0], sent[0] + words[i - 1][1])
                    # One "word" longer than a passage: text without spaces (Chinese, Japanese, Thai),
                    # a URL, a base64 blob. Cut it into the longest runs of characters that fit.
                    spans.extend(
                        _pieces(text, *run, max_tokens, count) if count(text[run[0] : run[1]]) > max_tokens else [run]
                    )
                    run_start = i
    return spans


def _pieces(text: str, start: int, end: int, max_tokens: int, count: Callable[[str], int]) -> list[tuple[int, int]]:
    """``text[start:end]`` cut into the longest character runs of at most ``max_tokens`` (binary search)."""
    out = []
    while start < end:
        lo, hi = start + 1, end  # the largest stop with count(text[start:stop]) <= max_tokens (at least 1 char)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        out.append((start, lo))
        start = lo
    return out


def _spans(text: str, separator: re.Pattern, start: int, end: int) -> list[tuple[int, int]]:
    out, pos = [], start
    for m in separator.finditer(text, start, end):
        if separator is _SENTENCES and _ABBREVIATION.search(text, max(start, m.start() - 8), m.start()):
            continue  # "Dr. Smith" is one sentence
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, end))
    return [
        (a + len(text[a:b]) - len(text[a:b].lstrip()), b - (len(text[a:b]) - len(text[a:b].rstrip())))
        for a, b in out
        if text[a:b].strip()
    ]


def split_passages(
    text: str, max_tokens: int = 200, overlap: int = 1, count_tokens: Callable[[str], int] | None = None
) -> list[Passage]:
    """Passages of ``text`` of at most ``max_tokens`` tokens each (``count_tokens``; words by default)."""
    if max_tokens <= 0:
        raise InvalidInputError(f"max_tokens must be a positive integer, but got {max_tokens}")
    if overlap < 0:
        raise InvalidInputError(f"overlap must be >= 0, but got {overlap}")
    count = count_tokens or _words
    units = _units(text, max_tokens, count)
    passages: list[Passage] = []
    first = 0
    while first < len(units):
        last = first  # extend the passage unit by unit while it fits
        while last + 1 < len(units) and count(text[units[first][0] : units[last + 1][1]]) <= max_tokens:
            last += 1
        passages.append(Passage(text[units[first][0] : units[last][1]], units[first][0], units[last][1]))
        if last + 1 >= len(units):
            break
        # Repeat up to `overlap` units, as many as still leave room for the next new unit.
        first = max(first + 1, last + 1 - overlap)
        while first <= last and count(text[units[first][0] : units[last + 1][1]]) > max_tokens:
            first += 1
    return passages
