"""slim's cache directory and its one store of JSON documents.

Location: `$SLIM_CACHE_DIR/<kind>` when set, else `$XDG_CACHE_HOME/slim/<kind>`, else
`~/.cache/slim/<kind>`. Kinds: `syscalls` (per-libc syscall maps), `analyze`, `check`, `why`
and `graph` (whole results, slim.result_cache; `why` with what slim why reads of the
analysis, `graph` with the dependency graph), `layers`
(slim.layer_cache), `registry` (skopeo pulls), `parse` (one SQLite file: what each source
file's parse found, keyed by the sha256 of its bytes — `ParseStore`).

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


def read_json(path: Path, fmt: int) -> dict[str, Any] | None:
    """The JSON object at `path` when it is one of format `fmt` (its "format" field), else None
    (missing, unreadable, not JSON, another format)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == fmt else None


def write_json(path: Path, doc: Any, *, sort_keys: bool = False) -> None:
    """Write `doc` to `path` as a new file renamed over it: an entry that is a link (planted, or
    left by anything) is replaced, never written through, and a reader never sees half an entry.
    Raises OSError; the temporary file is removed either way."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, sort_keys=sort_keys))  # the C encoder (json.dump is the Python one)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
        doc = read_json(self._path(key), self.fmt)
        return doc.get("data") if doc is not None else None

    def put(self, key: str, data: Any) -> None:
        if disabled():
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"format": self.fmt, "data": data}, sort_keys=True)
            self._prune()
        except (OSError, ValueError, SlimError) as exc:
            log.debug("%s cache: %s not written: %s", self.kind, path, exc)

    def _prune(self) -> None:
        entries = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in entries[: max(0, len(entries) - self.max_entries)]:
            with contextlib.suppress(OSError):
                old.unlink()




class ParseStore:
    """Results of pure functions of a file's bytes (the imports a Python source names …),
    keyed by (kind, sha256 of the bytes): a file shared by many images — a distribution's
    stdlib, a pinned package — is parsed once per machine.

    One SQLite file (`parse/parse.sqlite3`), written in one transaction per analysis
    (`flush`); values are JSON. At most `max_rows` rows: the least recently used go first.
    Every failure (a locked, full or corrupt database) is logged and the store turns itself off
    for the rest of the run — the parse is simply done again.
    """

    def __init__(self, max_rows: int = 200_000) -> None:
        self.max_rows = max_rows
        self._db: Any = None
        self._off = disabled()
        self._pending: list[tuple[str, str, str]] = []
        self._used: list[tuple[str, str]] = []

    def _open(self) -> Any:
        if self._db is None and not self._off:
            import sqlite3

            try:
                directory = cache_dir("parse")
                directory.mkdir(parents=True, exist_ok=True)
                # one thread at a time, but not always the same one: the static part of an
                # analysis may run in a thread while the image runs traced (pipeline.StaticStart)
                db = sqlite3.connect(directory / "parse.sqlite3", timeout=2.0, isolation_level=None,
                                     check_same_thread=False)
                db.execute("CREATE TABLE IF NOT EXISTS parse (kind TEXT, digest TEXT, value TEXT, "
                           "used INTEGER, PRIMARY KEY (kind, digest))")
                self._db = db
            except (OSError, sqlite3.Error) as exc:
                self._fail(exc)
        return self._db

    def _fail(self, exc: Exception) -> None:
        log.debug("parse cache off for this run: %s", exc)
        self._off = True
        self._db = None

    def get(self, kind: str, digest: str) -> Any | None:
        db = self._open()
        if db is None:
            return None
        import sqlite3

        try:
            row = db.execute("SELECT value FROM parse WHERE kind = ? AND digest = ?", (kind, digest)).fetchone()
            value = json.loads(row[0]) if row else None
        except (sqlite3.Error, ValueError) as exc:
            self._fail(exc)
            return None
        if row:
            self._used.append((kind, digest))
        return value

    def put(self, kind: str, digest: str, value: Any) -> None:
        if not self._off:
            self._pending.append((kind, digest, json.dumps(value, separators=(",", ":"))))

    def flush(self) -> None:
        """Write what this run parsed and mark what it reused, in one transaction."""
        db = self._open()
        if db is None or not (self._pending or self._used):
            return
        import sqlite3
        import time

        now = int(time.time())
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO parse VALUES (?, ?, ?, ?)",
                           [(k, d, v, now) for k, d, v in self._pending])
            db.executemany("UPDATE parse SET used = ? WHERE kind = ? AND digest = ?",
                           [(now, k, d) for k, d in self._used])
            (rows,) = db.execute("SELECT COUNT(*) FROM parse").fetchone()
            if rows > self.max_rows:
                db.execute("DELETE FROM parse WHERE rowid IN (SELECT rowid FROM parse ORDER BY used, rowid "
                           "LIMIT ?)", (rows - self.max_rows,))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._fail(exc)
        self._pending.clear()
        self._used.clear()

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None


__all__ = ["JsonStore", "ParseStore", "cache_dir", "cache_root", "digest_key", "disabled"]
