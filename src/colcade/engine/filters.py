"""Metadata filters -> SQL over the documents table, evaluated before any ranking.

A filter is a dict, MongoDB-style, as in LangChain's and Chroma's vector stores:

    {"source": "handbook.pdf"}                       equality
    {"year": {"$gte": 2020}, "lang": {"$in": ["en", "de"]}}
    {"$or": [{"source": "a.pdf"}, {"page": {"$lt": 3}}]}

Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists, combined with $and / $or / $not; for
list fields $contains (holds the value), $any (holds one of the values), $all (holds every
value); for strings $text (holds the substring; $itext ignores case); $empty (true: missing,
null, "" or []).
Comparisons are typed as in JSON: ``1`` never equals ``true`` and ``"1"`` never equals ``1``;
ordering compares numbers with numbers and strings with strings. ``{"key": None}`` matches a
missing key or a JSON null; ``$exists`` asks whether the key is present (null included).
Filters nest at most ``MAX_DEPTH`` levels and bind at most ``MAX_PARAMETERS`` values (lists
given to ``$in`` count once), which keeps every filter within SQLite's limits.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

from colcade.errors import FilterError

_ORDER = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = sorted(
    ["$eq", "$ne", *_ORDER, "$in", "$nin", "$exists", "$contains", "$any", "$all", "$text", "$itext", "$empty"]
)
MAX_DEPTH = 24
MAX_PARAMETERS = 20_000
_INT64 = (-(2**63), 2**63 - 1)


def _probe_escaped_paths() -> bool:
    """Whether this SQLite matches a JSON path label written with JSON escapes (``\\n``) or raw."""
    db = sqlite3.connect(":memory:")
    try:
        return bool(db.execute("SELECT json_extract(?, ?)", ('{"a\\\\b": 1}', '$."a\\\\b"')).fetchone()[0] == 1)
    finally:
        db.close()


_ESCAPED_PATHS = _probe_escaped_paths()


def json_path(key: str) -> str:
    """The SQLite JSON path of a top-level metadata key.

    >>> json_path("source")
    '$."source"'
    """
    if not isinstance(key, str) or not key or '"' in key or "\0" in key:
        raise FilterError(
            f"metadata key {key!r} cannot be filtered on: keys must be non-empty strings without double quotes or NUL"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(f"metadata key {key!r} is not valid Unicode") from None
    label = json.dumps(key, ensure_ascii=False)[1:-1] if _ESCAPED_PATHS else key
    return f'$."{label}"'


def to_sql(filter: dict[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause over ``docs.metadata`` (JSON) and its parameters.

    >>> to_sql({"page": {"$lt": 3}})
    ("(json_type(metadata, ?) IN ('integer', 'real') AND json_extract(metadata, ?) < ?)", ['$."page"', '$."page"', 3])
    """
    if not isinstance(filter, dict):
        raise FilterError(f"a filter must be a dict such as {{'source': 'a.pdf'}}, but got {type(filter).__name__}")
    params: list[Any] = []
    sql = _clause(filter, params, 0)
    if len(params) > MAX_PARAMETERS:
        raise FilterError(
            f"the filter binds {len(params)} values, over the {MAX_PARAMETERS} colcade allows; "
            "use $in with one list instead of many $or branches"
        )
    return sql, params


def _join(parts: list[str], op: str) -> str:
    """``a OP b OP c ...`` as a balanced tree, so thousands of branches stay shallow for SQLite."""
    if len(parts) == 1:
        return parts[0]
    mid = len(parts) // 2
    return f"({_join(parts[:mid], op)} {op} {_join(parts[mid:], op)})"


def _clause(filter: dict[str, Any], params: list[Any], depth: int) -> str:
    if depth > MAX_DEPTH:
        raise FilterError(
            f"the filter nests deeper than {MAX_DEPTH} levels; flatten it (an $and or $or takes many branches)"
        )
    parts = []
    for key, value in filter.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                raise FilterError(f"{key} takes a non-empty list of filters, but got {value!r}")
            parts.append(_join([_clause(v, params, depth + 1) for v in value], key[1:].upper()))
        elif key == "$not":
            if not isinstance(value, dict):
                raise FilterError(f"$not takes a filter, but got {value!r}")
            parts.append(_negate(_clause(value, params, depth + 1)))
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r} at the top level; use one of $and, $or, $not")
        else:
            parts.append(_field(key, value, params))
    return _join(parts, "AND") if parts else "1"


def _negate(sql: str) -> str:
    return f"NOT coalesce({sql}, 0)"  # NOT NULL would drop missing fields


def _field(key: str, condition: Any, params: list[Any]) -> str:
    path = json_path(key)
    if not isinstance(condition, dict) or not condition:
        if isinstance(condition, dict):
            raise FilterError(f"empty condition on {key!r}")
        condition = {"$eq": condition}
    parts = []
    for op, value in condition.items():
        if op in ("$eq", "$ne"):
            if value is None:
                params.append(path)
                parts.append(f"json_extract(metadata, ?) IS {'NOT ' if op == '$ne' else ''}NULL")
                continue
            equal = _equal(path, [_scalar(key, op, value)], params)
            parts.append(equal if op == "$eq" else _negate(equal))  # a missing field is "not equal", as in MongoDB
        elif op in _ORDER:
            value = _scalar(key, op, value)
            if isinstance(value, bool):
                raise FilterError(f"{op} on {key!r} orders numbers or strings, but got {value!r}")
            params += [path, path, value]
            parts.append(f"(json_type(metadata, ?) {_kind(value)} AND json_extract(metadata, ?) {_ORDER[op]} ?)")
        elif op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple, set, frozenset)) or not value:
                raise FilterError(f"{op} on {key!r} takes a non-empty list, but got {value!r}")
            inside = _equal(path, [_scalar(key, op, v) for v in value], params)
            parts.append(inside if op == "$in" else _negate(inside))
        elif op == "$exists":
            if not isinstance(value, bool):
                raise FilterError(f"$exists on {key!r} takes true or false, but got {value!r}")
            params.append(path)
            parts.append(f"json_type(metadata, ?) IS {'NOT ' if value else ''}NULL")
        elif op in ("$contains", "$any", "$all"):
            values = [value] if op == "$contains" else value
            if op != "$contains" and (not isinstance(value, (list, tuple, set, frozenset)) or not value):
                raise FilterError(f"{op} on {key!r} takes a non-empty list, but got {value!r}")
            held = [_holds(path, _scalar(key, op, v), params) for v in values]
            parts.append(_join(held, "AND" if op == "$all" else "OR"))
        elif op in ("$text", "$itext"):
            if not isinstance(value, str) or not value:
                raise FilterError(f"{op} on {key!r} takes a non-empty string, but got {value!r}")
            value = _scalar(key, op, value)
            params += [path, path, value.lower() if op == "$itext" else value]
            field = "lower(json_extract(metadata, ?))" if op == "$itext" else "json_extract(metadata, ?)"
            parts.append(f"(json_type(metadata, ?) = 'text' AND instr({field}, ?) > 0)")
        elif op == "$empty":
            if not isinstance(value, bool):
                raise FilterError(f"$empty on {key!r} takes true or false, but got {value!r}")
            params += [path] * 6
            empty = (
                "(json_type(metadata, ?) IS NULL OR json_type(metadata, ?) = 'null' "
                "OR (json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = '') "
                "OR (json_type(metadata, ?) = 'array' AND json_array_length(metadata, ?) = 0))"
            )
            parts.append(empty if value else _negate(empty))
        else:
            raise FilterError(f"unknown filter operator {op!r} on {key!r}; supported: {', '.join(OPERATORS)}")
    return _join(parts, "AND")


def _holds(path: str, value: Any, params: list[Any]) -> str:
    """The field is a list with ``value`` among its items (typed, as ``$eq``)."""
    if isinstance(value, bool):
        params += [path, path]
        test = f"e.type {_kind(value)}"
    else:
        params += [path, path, value]
        test = f"e.type {_kind(value)} AND e.value = ?"
    return f"(json_type(metadata, ?) = 'array' AND EXISTS (SELECT 1 FROM json_each(metadata, ?) AS e WHERE {test}))"


def _kind(value: Any) -> str:
    """The json_type test matching a Python scalar's JSON type."""
    if isinstance(value, bool):
        return "= 'true'" if value else "= 'false'"
    return "= 'text'" if isinstance(value, str) else "IN ('integer', 'real')"


def _equal(path: str, values: list[Any], params: list[Any]) -> str:
    """The field equals one of ``values``, type by type; each type's values bind as one JSON list."""
    parts = []
    for flag in (True, False):
        if any(v is flag for v in values):
            params.append(path)
            parts.append(f"json_type(metadata, ?) {_kind(flag)}")
    for kind in (str, (int, float)):
        group = [v for v in values if isinstance(v, kind) and not isinstance(v, bool)]
        if len(group) == 1:
            params += [path, path, group[0]]
            parts.append(f"(json_type(metadata, ?) {_kind(group[0])} AND json_extract(metadata, ?) = ?)")
        elif group:
            params += [path, path, json.dumps(group, ensure_ascii=False)]
            parts.append(
                f"(json_type(metadata, ?) {_kind(group[0])} "
                "AND json_extract(metadata, ?) IN (SELECT value FROM json_each(?)))"
            )
    return _join(parts, "OR")


def _scalar(key: str, op: str, value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, str):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise FilterError(f"{op} on {key!r}: {value!r} is not valid Unicode") from None
            if "\0" in value:
                raise FilterError(f"{op} on {key!r}: {value!r} holds a NUL character, which stored metadata cannot")
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise FilterError(f"{op} on {key!r}: {value} does not fit in 64 bits; compare with a float instead")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{op} on {key!r} compares with a finite number, but got {value!r}")
        return value
    raise FilterError(f"{op} on {key!r} compares with str, int, float or bool, but got {value!r}")
