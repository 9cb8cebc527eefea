"""Metadata filters -> SQL over the documents table, evaluated before any ranking.

A filter is a dict, MongoDB-style, as in LangChain's and Chroma's vector stores:

    {"source": "handbook.pdf"}                       equality
    {"year": {"$gte": 2020}, "lang": {"$in": ["en", "de"]}}
    {"$or": [{"source": "a.pdf"}, {"page": {"$lt": 3}}]}

Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists, combined with $and / $or / $not.
"""

from __future__ import annotations

from typing import Any

from colcade.errors import FilterError

_COMPARE = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_SCALARS = (str, int, float, bool)
OPERATORS = sorted([*_COMPARE, "$in", "$nin", "$exists"])


def to_sql(filter: dict[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause over ``docs.metadata`` (JSON) and its parameters.

    >>> to_sql({"source": "a.pdf", "page": {"$lt": 3}})
    ('(json_extract(metadata, ?) = ? AND json_extract(metadata, ?) < ?)', ['$."source"', 'a.pdf', '$."page"', 3])
    """
    if not isinstance(filter, dict):
        raise FilterError(f"a filter must be a dict such as {{'source': 'a.pdf'}}, but got {type(filter).__name__}")
    params: list[Any] = []
    return _clause(filter, params), params


def _clause(filter: dict[str, Any], params: list[Any]) -> str:
    parts = []
    for key, value in filter.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                raise FilterError(f"{key} takes a non-empty list of filters, but got {value!r}")
            joined = f" {key[1:].upper()} ".join(_clause(v, params) for v in value)
            parts.append(f"({joined})")
        elif key == "$not":
            if not isinstance(value, dict):
                raise FilterError(f"$not takes a filter, but got {value!r}")
            parts.append(f"NOT coalesce({_clause(value, params)}, 0)")  # NOT NULL would drop missing fields
        elif key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r} at the top level; use one of $and, $or, $not")
        else:
            parts.append(_field(key, value, params))
    if not parts:
        return "1"
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def _field(key: str, condition: Any, params: list[Any]) -> str:
    if '"' in key or not key:
        raise FilterError(f"metadata key {key!r} cannot be filtered on (empty, or contains a double quote)")
    if not isinstance(condition, dict):
        condition = {"$eq": condition}
    column = "json_extract(metadata, ?)"
    path = f'$."{key}"'
    parts = []
    for op, value in condition.items():
        if op in _COMPARE:
            if value is None and op in ("$eq", "$ne"):
                params.append(path)
                parts.append(f"{column} IS {'NOT ' if op == '$ne' else ''}NULL")
                continue
            _check_scalar(key, op, value)
            if op == "$ne":  # a missing field is "not equal" to anything, as in MongoDB
                params += [path, path, value]
                parts.append(f"({column} IS NULL OR {column} != ?)")
            else:
                params += [path, value]
                parts.append(f"{column} {_COMPARE[op]} ?")
        elif op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple, set)) or not value:
                raise FilterError(f"{op} on {key!r} takes a non-empty list, but got {value!r}")
            for v in value:
                _check_scalar(key, op, v)
            marks = ", ".join("?" * len(value))
            if op == "$in":
                params += [path, *value]
                parts.append(f"{column} IN ({marks})")
            else:
                params += [path, path, *value]
                parts.append(f"({column} IS NULL OR {column} NOT IN ({marks}))")
        elif op == "$exists":
            params.append(path)
            parts.append(f"{column} IS {'NOT ' if value else ''}NULL")
        else:
            raise FilterError(f"unknown filter operator {op!r} on {key!r}; supported: {', '.join(OPERATORS)}")
    if not parts:
        raise FilterError(f"empty condition on {key!r}")
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def _check_scalar(key: str, op: str, value: Any) -> None:
    if not isinstance(value, _SCALARS):
        raise FilterError(f"{op} on {key!r} compares with str, int, float or bool, but got {value!r}")
