"""colcade."""
