"""Whole analyses, cached: the same image analyzed the same way by the same code is read back.

An entry is keyed by what the result was computed from — the image ID (config digest), the
ordered layer digests, slim's code (a digest of its own source and shipped rules, so a changed
analyzer never reads an old result), the rule packs given with `--rules` (their contents),
and the options of the command — and holds the AnalysisResult as plain JSON (never pickle) plus
whatever the command adds (`slim check`'s forbidden paths). A hit is used only after the
stored layer blobs hash to their digests (`BlobImage.verify_blobs`): an entry stands for
content, never for names an archive chose. The hashing is skipped when the blobs are the very
files that were read (and verified) when the entry was written, unchanged: same path, device,
inode, size, mtime and ctime (`blob_identity`; git's index does the same). A write to a file
changes its ctime, which no unprivileged process can set back, and a replaced file has another
inode. Images without a content address (`rootfs:` directories, images without layer digests)
are never cached.

An image in the local Docker daemon is looked up without saving it: `docker inspect` gives its
ID and its layers' diff_ids (`daemon_key`), which the daemon computed and stores the layers by,
so it vouches for them and a hit hashes nothing (`vouched`); on a miss the image is saved by
that ID, and the result is stored only when the image analyzed has it (a tag moved meanwhile
is a miss next time, never a wrong hit). A pre-push hook's `slim check` of an unchanged image
built into the daemon no longer saves it on every push.

A registry's image (`docker://`, or a bare name the daemon lacks) is first copied into slim's
registry cache (slim.sources.registry: skopeo fetches the manifest and only the blobs the copy
lacks), then looked up like a layout on disk; on a miss the analysis reads that same copy.

`slim check`, `slim analyze` (without a trace or an SBOM, which needs the loaded image),
`slim seccomp` without a trace (the entry of `slim analyze --syscalls`), `slim why` and `slim
graph` (kind `graph`: the result and DependencyGraph.to_plain) use it;
`why` entries (kind `why`, also read for `slim analyze --format html`'s chains) hold besides
the result what `slim why` reads of the analysis (pipeline.why_index). `SLIM_NO_CACHE=1` turns
it off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from slim import __version__
from slim.cache import JsonStore
from slim.errors import LayerError, SourceError
from slim.result import AnalysisResult, result_from_plain, to_plain
from slim.sources import BlobImage

log = logging.getLogger(__name__)

FORMAT = 2
MAX_ENTRIES = 256
MAX_WHY_ENTRIES = 32


@functools.cache
def code_digest() -> str:
    """sha256 over slim's own Python sources and shipped rules: any change to the code that
    computes a result changes the keys of every cached result."""
    from slim.rules import rules_dir

    roots = [(Path(__file__).resolve().parent, "*.py")]
    with contextlib.suppress(FileNotFoundError):
        roots.append((rules_dir(), "*.toml"))
    files = [(root, path) for root, pattern in roots for path in sorted(root.rglob(pattern))]
    # Hashing the ~1 MB of sources took 28 ms of every cache hit: the digest is kept under the
    # files' identities (path, inode, size, ctime: a write changes a file's ctime, as for the
    # layer blobs, blob_identity) and computed again only when one of them changed.
    identity = hashlib.sha256(__version__.encode())
    try:
        for _root, path in files:
            st = path.stat()
            identity.update(f"{path}\0{st.st_ino}\0{st.st_size}\0{st.st_ctime_ns}\0".encode())
        seen = identity.hexdigest()
    except OSError:
        seen = ""
    store = JsonStore("code", 1, max_entries=16)
    known = store.get(seen) if seen else None
    if isinstance(known, dict) and isinstance(known.get("digest"), str):
        return str(known["digest"])
    sha = hashlib.sha256(__version__.encode())
    for root, path in files:
        sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest = sha.hexdigest()
    if seen:
        store.put(seen, {"digest": digest})
    return digest


def rules_digest(dirs: tuple[str, ...]) -> str:
    """sha256 over the rule packs of user `--rules` directories (names and contents)."""
    sha = hashlib.sha256()
    for d in dirs:
        root = Path(d)
        sha.update(d.encode() + b"\0")
        if root.is_dir():
            for path in sorted(root.glob("*.toml")):
                sha.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def layer_ids(image: Any) -> list[str]:
    """The layers' content addresses (legacy `docker save` archives name layers by path only:
    the config's diff_ids, which the image ID already covers, stand in)."""
    diff_ids = list(getattr(image, "diff_ids", []) or [])
    return [layer.digest or layer.diff_id or (diff_ids[i] if i < len(diff_ids) else "")
            for i, layer in enumerate(image.layers)]


def result_key(image: Any, material: dict[str, Any]) -> str | None:
    """The entry name for `image` analyzed with `material` (options, config digests …), or
    None when the image has no content address."""
    if not isinstance(image, BlobImage):
        return None
    return _key(image.digest, layer_ids(image), material)


def daemon_key(image: Any, material: dict[str, Any]) -> str | None:
    """result_key of a daemon image from what `docker inspect` says of it (DaemonImageId):
    the same entry as result_key of the image saved (its layers' digests are their diff_ids)."""
    return _key(image.digest, list(image.diff_ids), material)


def _key(image_id: str, ids: list[str], material: dict[str, Any]) -> str | None:
    if not image_id or not ids or not all(ids):
        return None
    doc = {"format": FORMAT, "image": image_id, "layers": ids, "code": code_digest(), **material}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def blob_identity(image: Any) -> list[list[Any]] | None:
    """What identifies the files holding `image`'s blobs (module doc), or None."""
    files = image.blob_files() if isinstance(image, BlobImage) else []
    return _stat_all(sorted(set(files))) if files else None


def _stat_all(paths: list[str]) -> list[list[Any]] | None:
    out: list[list[Any]] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            return None
        out.append([p, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return out


class ResultCache:
    """One kind of cached result (`check`, `analyze`, `why`, `graph`)."""

    def __init__(self, kind: str) -> None:
        # `why` and `graph` entries also hold the graph's chains or edges (MBs): fewer of them
        self.store = JsonStore(kind, FORMAT, max_entries=MAX_WHY_ENTRIES if kind in ("why", "graph") else MAX_ENTRIES)

    def get(self, key: str | None, image: Any, *, vouched: bool = False) -> tuple[AnalysisResult, Any] | None:
        """(result with this image's reference, the extra data) on a verified hit, else None.
        `vouched`: the image's store computed its content address and holds it by that (the
        Docker daemon, daemon_key); nothing is hashed."""
        if not key:
            return None
        data = self.store.get(key)
        if data is None:
            return None
        try:
            result = result_from_plain(data["result"])
            extra = data.get("extra")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.info("%s cache %s: ignoring a broken entry: %s", self.store.kind, key, exc)
            return None
        known = data.get("blobs")
        if vouched:
            log.info("%s: the image's ID and diff_ids come from its store: not hashed", image.ref)
        elif known and known == blob_identity(image):
            log.info("%s: blobs unchanged since they were verified (same files, inodes, sizes, "
                     "mtimes, ctimes): not hashed again", image.ref)
        elif not _blobs_are_what_they_claim(image):
            return None
        log.info("%s: %s cache hit (%s)", image.ref, self.store.kind, key)
        return dataclasses.replace(result, image=dataclasses.replace(result.image, reference=str(image.ref))), extra

    def get_daemon(self, ref: Any, material: dict[str, Any]) -> tuple[tuple[AnalysisResult, Any] | None, str | None, str]:
        """(`get`'s answer, the key, the image ID it stands for) for the `docker-daemon:` image
        `ref` names, found by `docker inspect` alone (daemon_key; vouched): the image is not
        saved. Raises SourceError."""
        from slim.sources.daemon import daemon_image_id

        known = daemon_image_id(ref)
        key = daemon_key(known, material)
        return self.get(key, known, vouched=True), key, known.digest

    def get_daemon_first(self, ref: Any, material: dict[str, Any]
                         ) -> tuple[tuple[AnalysisResult, Any] | None, str | None, str] | None:
        """get_daemon's answer for a reference open_image looks up in the daemon first
        (sources.daemon_first); None for any other reference, and for a bare name the daemon
        lacks (open_image asks a registry next). Raises SourceError for a `docker-daemon:`
        reference the daemon lacks."""
        from slim.sources import daemon_first

        if not daemon_first(ref):
            return None
        try:
            return self.get_daemon(ref, material)
        except SourceError:
            if ref.transport == "docker-daemon":
                raise
            return None

    def put(self, key: str | None, result: AnalysisResult, extra: Any = None,
            blobs: list[list[Any]] | None = None) -> None:
        """Store `result`. `blobs` is `blob_identity` taken before the image was read: it is
        kept only when the files are still the same now (nothing wrote them meanwhile)."""
        if key:
            same = bool(blobs) and _stat_all([b[0] for b in blobs or []]) == blobs
            self.store.put(key, {"result": to_plain(result), "extra": extra, "blobs": blobs if same else None})


def _blobs_are_what_they_claim(image: Any) -> bool:
    """A hit stands for the layers' content: hash the stored blobs (cheap next to parsing
    them) so a tampered archive reusing an analyzed image's digests is a miss, and its reading
    then fails with the mismatch."""
    if not isinstance(image, BlobImage):
        return False
    try:
        image.verify_blobs()
    except (LayerError, SourceError, OSError) as exc:
        log.info("result cache: not used: %s", exc)
        return False
    return True


__all__ = ["ResultCache", "blob_identity", "code_digest", "daemon_key", "layer_ids", "result_key", "rules_digest"]
