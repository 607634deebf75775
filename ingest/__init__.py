"""ragfirst ingest: load, chunk, embed and store documents in Chroma.

The public surface is listed in ``__all__``; modules import their heavy dependencies lazily.
"""

from ingest.errors import IngestError
from ingest.settings import Settings, get_settings

__all__ = ["IngestError", "Settings", "get_settings"]
