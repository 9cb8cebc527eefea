"""Why did a passage match? MaxSim, token by token.

For each query token: the passage token it matched best, their similarity, and its share of
the score (the MaxSim score is the sum of those similarities). Late interaction makes this
exact and cheap; single-vector retrievers cannot show it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from colcade.encoders.base import EncodedQuery
from colcade.errors import InvalidInputError


@dataclass(frozen=True)
class TokenMatch:
    query_token: str
    passage_token: str
    passage_position: int
    similarity: float


@dataclass(frozen=True)
class Explanation:
    """The token-level MaxSim of one query and one passage; ``score`` = sum of similarities."""

    query: str
    passage_id: str
    passage_tokens: list[str]
    matches: list[TokenMatch]

    @property
    def score(self) -> float:
        return float(sum(m.similarity for m in self.matches))

    def to_text(self, color: bool = True) -> str:
        """A terminal table, strongest matches first, with the passage tokens highlighted."""
        bold, dim, reset = ("\033[1;33m", "\033[2m", "\033[0m") if color else ("", "", "")
        lines = [
            f"MaxSim score {self.score:.3f} for passage {self.passage_id!r} ({len(self.matches)} query tokens)",
            "",
        ]
        width = max((len(m.query_token) for m in self.matches), default=5)
        for m in sorted(self.matches, key=lambda m: -m.similarity):
            share = m.similarity / self.score * 100 if self.score else 0.0
            lines.append(f"  {m.query_token:>{width}} -> {m.passage_token:<16} {m.similarity:6.3f}  {share:5.1f}%")
        strength = self._strength()
        rendered = " ".join(
            f"{bold}{t}{reset}" if strength[i] >= 0.5 else (t if strength[i] > 0 else f"{dim}{t}{reset}")
            for i, t in enumerate(self.passage_tokens)
        )
        return "\n".join(lines + ["", rendered])

    def _strength(self) -> np.ndarray:
        """Per passage token: its best similarity to a query token that chose it, scaled to [0, 1]."""
        best = np.zeros(len(self.passage_tokens))
        for m in self.matches:
            best[m.passage_position] = max(best[m.passage_position], m.similarity)
        return best / best.max() if best.max() > 0 else best

    def to_html(self) -> str:
        """The passage with each matched token shaded by its match strength (for notebooks)."""
        strength = self._strength()
        spans = "".join(
            f'<span title="{html.escape(t)}" style="background: rgba(255, 170, 0, {s:.2f}); padding: 1px 2px">'
            f"{html.escape(t)}</span> "
            for t, s in zip(self.passage_tokens, strength)
        )
        rows = "".join(
            f"<tr><td>{html.escape(m.query_token)}</td><td>{html.escape(m.passage_token)}</td><td>{m.similarity:.3f}</td></tr>"
            for m in sorted(self.matches, key=lambda m: -m.similarity)
        )
        return (
            f"<div><b>MaxSim {self.score:.3f}</b> for <code>{html.escape(self.passage_id)}</code><p>{spans}</p>"
            f"<table><tr><th>query token</th><th>best passage token</th><th>similarity</th></tr>{rows}</table></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def explain(index: Any, query: str, passage_id: str) -> Explanation:
    """Explain the MaxSim score of passage ``passage_id`` for ``query`` (text queries only).

    Needs an encoder with ``token_strings`` (the default encoder and ColBERT checkpoints have it).
    """
    encoder = index.encoder
    if not hasattr(encoder, "token_strings"):
        raise InvalidInputError(f"encoder {encoder.name!r} cannot name its tokens, so matches cannot be explained")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("explain needs a non-empty text query")
    text = index.get([passage_id])[0]["text"]  # UnknownIdError for a wrong id
    q: EncodedQuery = encoder.encode_query(query)
    p = encoder.encode_documents([text]).tokens[0]
    q_names, p_names = encoder.token_strings(query, is_query=True), encoder.token_strings(text)
    if len(q_names) != len(q.tokens) or len(p_names) != len(p):
        raise InvalidInputError("the encoder's token names do not line up with its vectors")
    sims = np.asarray(q.tokens, np.float32) @ np.asarray(p, np.float32).T
    best = sims.argmax(axis=1)
    matches = [TokenMatch(q_names[i], p_names[j], int(j), float(sims[i, j])) for i, j in enumerate(best)]
    return Explanation(query, passage_id, p_names, matches)
