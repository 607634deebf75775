"""Errors raised while turning files into an index.

::

    IngestError                  base; its message is shown to the user as the reason
    ├── SkippedFile              we chose not to read the file (a skip, not a failure)
    │   ├── UnsupportedFormat    no loader for the file's suffix
    │   ├── EmptyDocument        no text in the file
    │   ├── FileTooLarge         over the size limit (RAG_MAX_FILE_MB)
    │   └── OutsideRoot          a symlink pointing outside the folder given
    ├── UnreadableDocument       we tried and could not read it: corrupt, encrypted, binary, not UTF-8
    ├── StoreError               the Chroma store refused or could not be reached
    │   └── EmbedderMismatch     the collection was built with another embedding model
    ├── EmbedBackendError        the embedding backend could not be set up (the ONNX int8 export)
    ├── UnknownCollection        no collection of that name
    ├── InvalidCollectionName    a name Chroma cannot hold (also a ValueError)
    └── UnknownDocument          no document with that source or id in the collection
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every ingest error; ``str(error)`` is a reason fit to show a user."""


class SkippedFile(IngestError):
    """The file is left out on purpose; a run with only skips still succeeds."""


class UnsupportedFormat(SkippedFile):
    """No loader handles the file's suffix."""


class EmptyDocument(SkippedFile):
    """The file holds no text to index."""


class FileTooLarge(SkippedFile):
    """The file is over the configured size limit."""


class OutsideRoot(SkippedFile):
    """The path resolves outside the folder that was given."""


class UnreadableDocument(IngestError):
    """The file could not be parsed: corrupt, encrypted, binary or in an unknown encoding."""


class StoreError(IngestError):
    """The Chroma store failed or could not be reached."""


class EmbedderMismatch(StoreError):
    """The collection's vectors come from another embedding model than the configured one."""


class EmbedBackendError(IngestError):
    """The configured embedding backend could not be prepared; the message says how to fall back."""


class UnknownDocument(IngestError):
    """No document with that source or id exists in the collection."""


class UnknownCollection(IngestError):
    """No collection of that name exists in the store."""


class InvalidCollectionName(IngestError, ValueError):
    """The collection name has characters or a length that cannot be stored."""
