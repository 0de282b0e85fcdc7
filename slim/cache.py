"""slim's cache directory and its one store of JSON documents.

Location: `$SLIM_CACHE_DIR/<kind>` when set, else `$XDG_CACHE_HOME/slim/<kind>`, else
`~/.cache/slim/<kind>`. Kinds: `syscalls` (per-libc syscall maps), `check` (`slim check`
results), `registry` (skopeo pulls).

A cache key is always a digest slim computed itself over the content the entry stands for
(never a name or an ID the image chose), so a hostile image cannot plant an entry that another
image then reads. Entries are plain JSON, never pickle: a cache file is data, not code. A cache
is an optimisation: a failure to read or write one is logged and the work is done again.
`SLIM_NO_CACHE=1` (or `--no-cache`) turns every store off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from slim.errors import SlimError

log = logging.getLogger(__name__)

MAX_ENTRIES = 4096  # per kind; the oldest beyond this are removed on write


def cache_root() -> Path:
    explicit = os.environ.get("SLIM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "slim"


def cache_dir(kind: str) -> Path:
    """The directory of one kind of cache (not created here)."""
    return cache_root() / kind


def disabled() -> bool:
    return os.environ.get("SLIM_NO_CACHE", "").lower() in ("1", "true", "yes")


def digest_key(*parts: str) -> str:
    """A cache key: sha256 over the parts (each a digest or version slim computed)."""
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


class JsonStore:
    """Entries `<key>.json` of one cache kind; each holds a `format` number and a document."""

    def __init__(self, kind: str, fmt: int, max_entries: int = MAX_ENTRIES) -> None:
        self.kind = kind
        self.fmt = fmt
        self.max_entries = max_entries

    @property
    def directory(self) -> Path:
        return cache_dir(self.kind)

    def _path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"{self.kind} cache: a key must be a hex digest, not {key!r}")
        return self.directory / f"{key}.json"

    def get(self, key: str) -> Any | None:
        if disabled():
            return None
        try:
            doc = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != self.fmt or "data" not in doc:
            return None
        return doc["data"]

    def put(self, key: str, data: Any) -> None:
        if disabled():
            return
        path = self._path(key)
        tmp = ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a new file renamed over the entry: an entry that is a link (planted, or left by
            # anything) is replaced, never written through
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps({"format": self.fmt, "data": data}, sort_keys=True))
            os.replace(tmp, path)
            tmp = ""
            self._prune()
        except (OSError, ValueError, SlimError) as exc:
            log.debug("%s cache: %s not written: %s", self.kind, path, exc)
        finally:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _prune(self) -> None:
        entries = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in entries[: max(0, len(entries) - self.max_entries)]:
            with contextlib.suppress(OSError):
                old.unlink()


__all__ = ["JsonStore", "cache_dir", "cache_root", "digest_key", "disabled"]
