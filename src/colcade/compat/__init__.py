"""Compatibility facades for users coming from other libraries (RAGatouille)."""
