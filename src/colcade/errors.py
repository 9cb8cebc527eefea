"""colcade's exceptions: each names what went wrong and what to do next."""

from __future__ import annotations


class ColcadeError(Exception):
    """Base class of every error colcade raises on purpose."""


class InvalidInputError(ColcadeError, ValueError):
    """Bad arguments: empty text, wrong vector shape, NaN, k <= 0, ..."""


class DuplicateIdError(InvalidInputError):
    """The same id twice in one call, or an `add` of an id the index already holds."""


class FilterError(InvalidInputError):
    """A metadata filter colcade cannot translate (unknown operator, wrong value type)."""


class UnknownIdError(ColcadeError, KeyError):
    """Ids that are not in the index (on `delete` or `get`)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class IndexNotFoundError(ColcadeError, FileNotFoundError):
    """`LateIndex.open` on a path that holds no index."""


class IndexExistsError(ColcadeError, FileExistsError):
    """`LateIndex.create` on a path that already holds something."""


class CorruptIndexError(ColcadeError):
    """Index files that are missing, unreadable or inconsistent with each other."""


class EncoderMismatchError(ColcadeError):
    """An index opened or queried with a different encoder than the one that built it."""


class EncoderUnavailableError(ColcadeError, ImportError):
    """An encoder whose model or optional dependency is not installed here."""


class IndexLockedError(ColcadeError, TimeoutError):
    """Another process (or handle) held the index's write lock for longer than the timeout."""


class IndexClosedError(ColcadeError):
    """A call on a `LateIndex` after `close()`."""


class StorageError(ColcadeError, OSError):
    """A write that the disk refused (full, read-only, size limit); nothing was committed."""


class BackendUnavailableError(ColcadeError, ConnectionError):
    """A remote engine (a Qdrant server) that cannot be reached, or a local one held by another process."""


class MissingDependencyError(ColcadeError, ImportError):
    """An optional package a feature needs is not installed; the message has the pip line."""
