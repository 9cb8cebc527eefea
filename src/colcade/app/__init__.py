"""The application on top of the library: the ``colcade`` command and what it needs (reading
files, chunking, incremental ingest, extractive answers, the demo, evaluation). Nothing in the
library imports from here."""
