"""colcade metadata filters -> Qdrant ``Filter`` objects, with the same operators where Qdrant
has them and a ``FilterError`` naming the operator where it does not.

Metadata lives under the payload key ``metadata``, so ``{"source": "a.pdf"}`` becomes a match on
``metadata.source``. What differs from a ``LateIndex`` (SQLite JSON) is said where it happens:

- Qdrant matches a list field element by element: ``{"tags": "a"}`` matches ``["a", "b"]``
  (in a ``LateIndex`` that takes ``$contains``);
- numbers compare as numbers (``2`` equals ``2.0``, as in SQLite); strings cannot be ordered
  (``$gt`` on a string is refused);
- an empty list counts as missing (``{"k": None}``, ``$exists``, ``$empty``), and ``$contains``,
  ``$any`` and ``$all`` also match a scalar field equal to the value;
- integers beyond 2**53 match exactly, so they never equal a float;
- ``$text`` / ``$itext`` (substring) have no Qdrant equivalent: its full-text match is by whole
  words, which would silently match other passages, so they are refused.
"""

from __future__ import annotations

import re
from typing import Any

from qdrant_client import models

from colcade.engine import filters as local_filters
from colcade.errors import FilterError

PAYLOAD_KEY = "metadata"
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_EXACT_FLOAT = 2**53  # integers a float64 holds exactly
_ORDER = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
Condition = models.Condition


def to_qdrant(filter: dict[str, Any]) -> models.Filter:
    """The Qdrant filter for a colcade filter (``colcade.engine.filters`` documents them).

    >>> to_qdrant({"page": {"$lt": 3}}).must[0].range.lt
    3.0
    """
    if not isinstance(filter, dict):
        raise FilterError(f"a filter must be a dict such as {{'source': 'a.pdf'}}, but got {type(filter).__name__}")
    return _clause(filter, 0)


def field_path(key: str) -> str:
    """The payload path of metadata ``key`` (quoted when it holds characters a path would split on).

    >>> field_path("source"), field_path("a.b")
    ('metadata.source', 'metadata."a.b"')
    """
    local_filters.json_path(key)  # the same key rules as a LateIndex
    return f"{PAYLOAD_KEY}.{key}" if _PLAIN_KEY.match(key) else f'{PAYLOAD_KEY}."{key}"'


def _clause(filter: dict[str, Any], depth: int) -> models.Filter:
    if depth > local_filters.MAX_DEPTH:
        raise FilterError(f"the filter nests deeper than {local_filters.MAX_DEPTH} levels; flatten it")
    must: list[Condition] = []
    for key, value in filter.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                raise FilterError(f"{key} takes a non-empty list of filters, but got {value!r}")
            parts: list[Condition] = [_clause(v, depth + 1) for v in value]
            must.append(models.Filter(must=parts) if key == "$and" else models.Filter(should=parts))
        elif key == "$not":
            if not isinstance(value, dict):
                raise FilterError(f"$not takes a filter, but got {value!r}")
            must.append(models.Filter(must_not=[_clause(value, depth + 1)]))
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r} at the top level; use one of $and, $or, $not")
        else:
            must.extend(_field(key, value))
    return models.Filter(must=must)


def _field(key: str, condition: Any) -> list[Condition]:
    path = field_path(key)
    if not isinstance(condition, dict) or not condition:
        if isinstance(condition, dict):
            raise FilterError(f"empty condition on {key!r}")
        condition = {"$eq": condition}
    out: list[Condition] = []
    for op, value in condition.items():
        if op in ("$eq", "$ne"):
            equal = _missing(path) if value is None else _equal(path, _scalar(key, op, value))
            out.append(equal if op == "$eq" else models.Filter(must_not=[equal]))  # missing is "not equal"
        elif op in _ORDER:
            value = _scalar(key, op, value)
            if isinstance(value, (bool, str)):
                raise FilterError(
                    f"{op} on {key!r}: Qdrant orders numbers only, but got {value!r} "
                    "(store dates as numbers, e.g. a Unix time or 20240131, to range over them)"
                )
            out.append(models.FieldCondition(key=path, range=models.Range(**{_ORDER[op]: float(value)})))
        elif op in ("$in", "$nin", "$any"):
            if not isinstance(value, (list, tuple, set, frozenset)) or not value:
                raise FilterError(f"{op} on {key!r} takes a non-empty list, but got {value!r}")
            inside = _any(path, [_scalar(key, op, v) for v in value])
            out.append(models.Filter(must_not=[inside]) if op == "$nin" else inside)
        elif op == "$all":
            if not isinstance(value, (list, tuple, set, frozenset)) or not value:
                raise FilterError(f"$all on {key!r} takes a non-empty list, but got {value!r}")
            out.append(models.Filter(must=[_equal(path, _scalar(key, op, v)) for v in value]))
        elif op == "$contains":
            out.append(_equal(path, _scalar(key, op, value)))
        elif op == "$exists":
            if not isinstance(value, bool):
                raise FilterError(f"$exists on {key!r} takes true or false, but got {value!r}")
            missing = models.Filter(must=[_empty(path)], must_not=[_null(path)])
            out.append(models.Filter(must_not=[missing]) if value else missing)
        elif op == "$empty":
            if not isinstance(value, bool):
                raise FilterError(f"$empty on {key!r} takes true or false, but got {value!r}")
            empty = models.Filter(should=[_empty(path), _equal(path, "")])
            out.append(empty if value else models.Filter(must_not=[empty]))
        elif op in ("$text", "$itext"):
            raise FilterError(
                f"{op} on {key!r} is a substring match, which Qdrant has no equivalent of (its full-text "
                "match is by whole words); filter on an exact value, or use a LateIndex"
            )
        else:
            raise FilterError(
                f"unknown filter operator {op!r} on {key!r}; use one of {', '.join(local_filters.OPERATORS)}"
            )
    return out


def _scalar(key: str, op: str, value: Any) -> Any:
    if isinstance(value, float) and value != value:
        raise FilterError(f"{op} on {key!r} got NaN, which matches nothing")
    if value is None or not isinstance(value, (str, int, float, bool)):
        raise FilterError(f"{op} on {key!r} takes a string, number or bool, but got {value!r}")
    return value


def _equal(path: str, value: Any) -> Condition:
    if isinstance(value, (bool, str)):
        return models.FieldCondition(key=path, match=models.MatchValue(value=value))
    if isinstance(value, int) and abs(value) > _EXACT_FLOAT:  # a float would round it onto a neighbour
        return models.FieldCondition(key=path, match=models.MatchValue(value=value))
    # A number: a range of one point, so 2 equals 2.0 (a MatchValue is exact on integers only).
    return models.FieldCondition(key=path, range=models.Range(gte=float(value), lte=float(value)))


def _any(path: str, values: list[Any]) -> Condition:
    if all(isinstance(v, str) for v in values):
        return models.FieldCondition(key=path, match=models.MatchAny(any=values))
    return models.Filter(should=[_equal(path, v) for v in values])


def _empty(path: str) -> models.IsEmptyCondition:
    return models.IsEmptyCondition(is_empty=models.PayloadField(key=path))


def _null(path: str) -> models.IsNullCondition:
    return models.IsNullCondition(is_null=models.PayloadField(key=path))


def _missing(path: str) -> Condition:
    """``{"key": None}``: the key is missing or null (Qdrant's is_empty also takes ``[]``)."""
    return models.Filter(should=[_empty(path), _null(path)])
