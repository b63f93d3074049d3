"""campaign: an async bulk-dialing campaign engine for the Plivo Voice API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("campaign")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
