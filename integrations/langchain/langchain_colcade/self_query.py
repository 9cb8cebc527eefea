"""ColcadeTranslator: LangChain's structured queries (``SelfQueryRetriever``) as colcade filters."""

from __future__ import annotations

from typing import Any

from langchain_core.structured_query import Comparator, Comparison, Operation, Operator, StructuredQuery, Visitor


class ColcadeTranslator(Visitor):
    """Turns what an LLM wrote for ``SelfQueryRetriever`` into a colcade ``filter``.

    ``contain`` is a list field holding the value (``$contains``), ``like`` a substring of a
    string field (``$text``); the rest map one to one.

    Example:
        .. code-block:: python

            from langchain_classic.retrievers.self_query.base import SelfQueryRetriever
            from langchain_colcade import ColcadeTranslator, ColcadeVectorStore

            retriever = SelfQueryRetriever.from_llm(
                llm, store, "notes", attribute_info, structured_query_translator=ColcadeTranslator()
            )
    """

    allowed_comparators = tuple(Comparator)
    allowed_operators = tuple(Operator)
    _COMPARATORS = {
        Comparator.EQ: "$eq",
        Comparator.NE: "$ne",
        Comparator.GT: "$gt",
        Comparator.GTE: "$gte",
        Comparator.LT: "$lt",
        Comparator.LTE: "$lte",
        Comparator.IN: "$in",
        Comparator.NIN: "$nin",
        Comparator.CONTAIN: "$contains",
        Comparator.LIKE: "$text",
    }

    def visit_operation(self, operation: Operation) -> dict[str, Any]:
        parts = [arg.accept(self) for arg in operation.arguments]
        if operation.operator == Operator.NOT:
            return {"$not": parts[0] if len(parts) == 1 else {"$and": parts}}
        return {f"${operation.operator.value}": parts}

    def visit_comparison(self, comparison: Comparison) -> dict[str, Any]:
        return {comparison.attribute: {self._COMPARATORS[comparison.comparator]: comparison.value}}

    def visit_structured_query(self, structured_query: StructuredQuery) -> tuple[str, dict[str, Any]]:
        if structured_query.filter is None:
            return structured_query.query, {}
        return structured_query.query, {"filter": structured_query.filter.accept(self)}
