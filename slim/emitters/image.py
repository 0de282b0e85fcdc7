"""The minimal image: the keep set written as a new image with slim's deterministic writer.

One layer holding every kept entry (modes, owners, xattrs such as file capabilities, mtimes,
hardlinks, symlinks, parent directories), or with `keep_base=N` the first N layers copied
untouched and one slimmed layer on top holding the kept entries of the upper layers plus the
whiteouts that make the squashed view equal to the source's. The image config is carried over
(Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal, Healthcheck)
with labels naming the source digest and slim's version, and a history entry.

The minimal image tells the truth about its packages (slim.analyzers.packages): its dpkg/apk
databases and Python RECORDs are rewritten to list only what is kept (`rewrite_databases`),
os-release and kept language packages' metadata are added (`metadata_paths`), and the image
is labelled `org.slim.package-db=trimmed`. With `sbom=` an SBOM of the minimal image is made
(slim.emitters.sbom) and attached to OCI layouts as a referrer artifact.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import posixpath
import threading
from dataclasses import dataclass
from typing import Any

from slim import __version__, reaper
from slim.analyzers.packages import (
    metadata_paths,
    package_summaries,
    read_packages,
    rewrite_databases,
)
from slim.emitters.imagewriter import (
    LayerBlob,
    LayerTarWriter,
    Referrer,
    compress_layer,
    plain_blob,
    write_image,
)
from slim.errors import EmitError
from slim.fs.tree import squash
from slim.layout import (
    KeptEntry,
    chain_ids,
    merge_parts,
    opened,
    preserve_parts,
    stream_kept,
    write_plan,
)
from slim.model import EntryKind, FileEntry, parent_dirs
from slim.outputs import SparseWriter, copy_sparse
from slim.refs import parse_output
from slim.result import PackageSummary

LABEL_SOURCE = "org.slim.source-digest"
LABEL_VERSION = "org.slim.version"
LABEL_PACKAGE_DB = "org.slim.package-db"  # "trimmed": the package databases list what is kept
LAYER_MODES = ("squash", "preserve")
CONFIG_KEYS = (
    "Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
    "StopSignal", "Healthcheck", "Shell", "OnBuild", "ArgsEscaped",
)


@dataclass(frozen=True)
class BuiltImage:
    dest: str
    digest: str  # config digest (the image ID)
    size_bytes: int  # regular-file bytes of the minimal filesystem
    file_count: int
    layers: int
    packages: tuple[PackageSummary, ...] = ()  # the removal report of the image as written
    sbom: bytes = b""  # the SBOM document (attached as a referrer to OCI layouts)
    sbom_format: str = ""  # its slim.emitters.sbom.SBOM_FORMATS key
    rewritten: tuple[str, ...] = ()  # paths whose bytes were rewritten (package databases)


@dataclass(frozen=True)
class MetadataPlan:
    """The minimal image's package metadata: every path to write (keep set plus metadata),
    the rewritten database files' contents, and the report of what each package keeps."""

    keep: set[str]
    written: dict[str, bytes]
    absent: set[str]
    packages: tuple[PackageSummary, ...]


Planned = tuple[FileEntry, str]  # an entry and the source path its bytes are read from


def minimal_entries(loaded: Any, keep: set[str]) -> list[Planned]:
    """The squashed entries to write (kept paths plus all their parent directories), each with
    the path whose bytes it carries."""
    fs = loaded.rootfs
    paths: set[str] = set()
    for p in keep:
        if p == "/" or fs.get(p) is None:
            continue  # "/" is the layer's implicit root, never a member (a trace may name it)
        paths.add(p)
        paths.update(d for d in parent_dirs(p) if fs.get(d) is not None)
    out: list[Planned] = []
    for p in sorted(paths):
        entry = fs.get(p)
        if entry.kind is EntryKind.HARDLINK and entry.linkname not in paths:
            # the other name of the inode is dropped: this name carries the content
            target = fs.get(entry.linkname)
            if target is None or target.kind is not EntryKind.FILE:
                continue
            entry = FileEntry(p, EntryKind.FILE, entry.mode, entry.uid, entry.gid, target.size,
                              "", target.layer, entry.mtime, entry.xattrs)
            out.append((entry, target.path))
            continue
        out.append((entry, p))
    return out


def plan_metadata(loaded: Any, keep: set[str], base_view: dict[str, FileEntry] | None = None) -> MetadataPlan:
    """What the minimal image for `keep` holds of package metadata (slim.analyzers.packages):
    the keep set plus `metadata_paths`, with the databases rewritten for exactly the paths the
    image will have (`base_view`: what untouched base layers still show, with --keep-base)."""
    fs = loaded.rootfs
    db = read_packages(fs)
    keep_all = set(keep) | metadata_paths(db, {db.normalize(p) for p in keep})
    present = {e.path for e, _ in minimal_entries(loaded, keep_all)} | set(base_view or {})
    rewrite = rewrite_databases(db, present)
    written = rewrite.written
    final = (keep_all - rewrite.absent) | set(written) | rewrite.unchanged
    image_paths = present - rewrite.absent
    packages = tuple(package_summaries(db, fs, image_paths))
    return MetadataPlan(final, written, rewrite.absent, packages)


def write_layer(loaded: Any, entries: list[Planned], tar_path: str, whiteouts: list[str],
                overrides: dict[str, bytes] | None = None) -> None:
    """Write `entries` (file data streamed from the source image, or the bytes `overrides`
    gives for a path) as one layer tar."""
    with open(tar_path, "wb") as raw:
        out = SparseWriter(raw.fileno())  # a sparse file's zeros stay holes in the tar
        with LayerTarWriter(out, keep_mtime=True) as writer:  # type: ignore[arg-type]
            _write_entries(loaded, entries, whiteouts, writer, overrides or {})
        out.close()


def _write_entries(loaded: Any, entries: list[Planned], whiteouts: list[str],
                   writer: LayerTarWriter, overrides: dict[str, bytes]) -> None:
    """Add `entries` and `whiteouts` to `writer`, file data re-read from the source layers
    (or taken from `overrides`)."""
    by_source: dict[tuple[int, str], list[FileEntry]] = {}
    for entry, source in entries:
        data = overrides.get(entry.path)
        if data is not None:
            writer.add(dataclasses.replace(entry, kind=EntryKind.FILE, size=len(data), linkname=""),
                       io.BytesIO(data))
        elif entry.kind is EntryKind.FILE and entry.size > 0:
            by_source.setdefault((entry.layer, source), []).append(entry)
        else:
            writer.add(entry)
    for w in whiteouts:
        writer.add_whiteout(w)
    stream_kept(writer, loaded.image, by_source, "kept files")


def minimal_config(loaded: Any, *, history_note: str, keep_base: int = 0,
                   package_db: bool = False) -> dict[str, Any]:
    raw = copy.deepcopy(loaded.image.raw_config or {})
    cfg = raw.get("config") or {}
    kept = {k: cfg[k] for k in CONFIG_KEYS if k in cfg}
    labels = dict(kept.get("Labels") or {})
    labels[LABEL_SOURCE] = loaded.image.digest
    labels[LABEL_VERSION] = __version__
    if package_db:
        labels[LABEL_PACKAGE_DB] = "trimmed"
    kept["Labels"] = dict(sorted(labels.items()))
    out: dict[str, Any] = {
        "architecture": raw.get("architecture", loaded.image.config.architecture),
        "os": raw.get("os", loaded.image.config.os),
        "config": kept,
    }
    if raw.get("variant"):
        out["variant"] = raw["variant"]
    if raw.get("created"):
        out["created"] = raw["created"]
    # history describes layers: keep the entries of the base layers kept, then ours
    history: list[dict[str, Any]] = []
    real = 0
    for h in raw.get("history") or []:
        if not isinstance(h, dict):
            continue
        if not h.get("empty_layer"):
            if real >= keep_base:
                break
            real += 1
        history.append(h)
    out["history"] = [*history, {"created_by": history_note, "comment": f"slim {__version__}"}]
    return out


def build_image(
    loaded: Any,
    keep: set[str],
    dest: str,
    *,
    keep_base: int = 0,
    compression: str = "gzip",
    docker_form: str = "oci",
    tag: str | None = "latest",
    sbom: str = "",
    layers: str = "squash",
) -> BuiltImage:
    """Write the minimal image for `keep` to `dest` (oci:DIR | oci-archive:FILE | docker-archive:FILE),
    named `tag` (imagewriter.write_image; None: no name).

    `sbom` (a slim.emitters.sbom.SBOM_FORMATS key) also makes an SBOM of the minimal image:
    attached as an OCI referrer artifact to oci: and oci-archive: outputs, returned in
    BuiltImage.sbom for every output (a docker-archive's goes beside it: slim.build).
    `layers`: "squash" (one layer over the `keep_base` untouched ones) or "preserve" (every
    original layer slimmed in place: slim.layout).
    Raises EmitError. Nothing is left at `dest` when writing fails.
    """
    with lay_image(loaded, keep, keep_base=keep_base, tag=tag, sbom=sbom, layers=layers) as laid:
        return laid.write(dest, compression, docker_form=docker_form)


class LaidImage:
    """The minimal image laid out once as plain (uncompressed) layer tars in a work directory,
    then written out as often as needed, each time compressed or not (`write`, `writing`).

    slim.build verifies the plain form (quick to write, to load and to unpack) while the
    compressed form is written beside it. Both are the same image: the same config with the
    same diff_ids, so the same image ID, which `write` returns as BuiltImage.digest. Use as a
    context manager (`lay_image`): leaving it stops writes still running and removes the work
    directory.
    """

    def __init__(self, work: str, kept: list[LayerBlob], plain: list[LayerBlob], config: dict[str, Any],
                 tag: str | None, sbom: str, sbom_doc: bytes, view: dict[str, FileEntry],
                 packages: tuple[PackageSummary, ...], rewritten: tuple[str, ...]) -> None:
        self.work = work
        self.kept = kept  # the --keep-base layers, as the source stores them (written as they are)
        self.plain = plain  # slim's own layers above them, uncompressed
        self.config = config
        self.tag = tag
        self.sbom, self.sbom_doc = sbom, sbom_doc
        files = [e for e in view.values() if e.kind is not EntryKind.DIR]
        self.size = sum(e.size for e in files if e.kind is EntryKind.FILE)
        self.file_count = len(files)
        self.packages = packages
        self.rewritten = rewritten
        self._writes: list[Writing] = []

    def write(self, dest: str, compression: str = "gzip", *, docker_form: str = "oci",
              stop: threading.Event | None = None, threads: int | None = None) -> BuiltImage:
        """Write the image to `dest` with slim's layers compressed by `compression` (`threads`
        to compress with; `stop` ends the write early: imagewriter.Cancelled). Raises EmitError;
        nothing is left at `dest` when writing fails."""
        blobs = list(self.kept)
        out_dir = os.path.join(self.work, compression)
        for blob in self.plain:
            if compression != "none":
                # level 6: gzip -6 is zlib's default; 9 costs ~5x the time for ~1 % on large layers
                blob = compress_layer(blob.path, out_dir, compression, diff_id=blob.diff_id,
                                      level=6 if compression == "gzip" else None, stop=stop, threads=threads)
            blobs.append(blob)
        referrers = []
        if self.sbom_doc and parse_output(dest).transport in ("oci", "oci-archive"):
            from slim.emitters.sbom import SBOM_FORMATS

            fmt = SBOM_FORMATS[self.sbom]
            referrers.append(Referrer(fmt.media_type, self.sbom_doc, f"sbom{fmt.suffix}"))
        try:
            digest = write_image(dest, blobs, self.config, docker_form=docker_form, mark_slim=True,
                                 referrers=referrers, tag=self.tag)
        except OSError as exc:
            raise EmitError(f"{dest}: {exc}") from None
        return BuiltImage(dest, digest, self.size, self.file_count, len(blobs), self.packages,
                          self.sbom_doc, self.sbom, self.rewritten)

    def writing(self, dest: str, compression: str = "gzip") -> Writing:
        """`write` in a thread, compressing on one core (the other is left to what runs
        meanwhile); `Writing.result()` waits for it."""
        w = Writing(self, dest, compression)
        self._writes.append(w)
        return w

    def close(self) -> None:
        for w in self._writes:
            w.cancel()
        reaper.remove_tree(self.work)

    def __enter__(self) -> LaidImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Writing:
    """A LaidImage being written in a thread (LaidImage.writing)."""

    def __init__(self, laid: LaidImage, dest: str, compression: str) -> None:
        self.dest = dest
        self._stop = threading.Event()
        self._built: BuiltImage | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(laid, dest, compression),
                                        name="slim-write", daemon=True)
        self._thread.start()

    def _work(self, laid: LaidImage, dest: str, compression: str) -> None:
        try:
            self._built = laid.write(dest, compression, stop=self._stop, threads=1)
        except BaseException as exc:  # re-raised by `result`, in the thread that asks
            self._error = exc

    def result(self) -> BuiltImage:
        """Wait for the write; what it built. Raises what the write raised."""
        try:
            self._thread.join()
        except BaseException:  # a signal while waiting: the write stops too
            self.cancel()
            raise
        if self._error is not None:
            raise self._error
        assert self._built is not None
        return self._built

    def cancel(self) -> None:
        """Stop the write at its next read of a layer tar, and wait for it to end: a write
        stopped in time leaves nothing at its destination (one already past compressing
        finishes it whole)."""
        self._stop.set()
        self._thread.join()


def lay_image(
    loaded: Any,
    keep: set[str],
    *,
    keep_base: int = 0,
    tag: str | None = "latest",
    sbom: str = "",
    layers: str = "squash",
) -> LaidImage:
    """The minimal image for `keep` laid out as plain layer tars (build_image's arguments).
    Raises EmitError; nothing is left behind when it does."""
    image = loaded.image
    if layers not in LAYER_MODES:
        raise EmitError(f"--layers {layers}: choose {', '.join(LAYER_MODES)}")
    if layers == "preserve" and keep_base:
        raise EmitError("--layers preserve keeps every layer already; --keep-base does not apply")
    if keep_base < 0 or keep_base > len(loaded.layers):
        raise EmitError(f"--keep-base {keep_base}: the image has {len(loaded.layers)} layers")
    if keep_base and not hasattr(image, "open_blob"):
        raise EmitError(f"{image.ref}: --keep-base needs an image with layer blobs")
    base_view, gone = _base_view(loaded, keep_base)
    plan = plan_metadata(loaded, keep, base_view)
    entries = minimal_entries(loaded, plan.keep)
    sbom_doc = b""
    if sbom:
        from slim.emitters.sbom import SbomSubject, render_sbom

        sbom_doc = render_sbom(sbom, plan.packages, SbomSubject.of(loaded, minimal=True))
    work = reaper.mkdtemp(prefix="slim-build-")
    try:
        kept: list[LayerBlob] = []
        whiteouts: list[str] = []
        if keep_base:
            for i in range(keep_base):
                raw = os.path.join(work, f"base{i}.tar")
                with image.open_blob(i) as src, open(raw, "wb") as dst:
                    copy_sparse(src, dst.fileno())
                kept.append(_as_blob(raw, work, loaded.layers[i]))
            # a removed package's database files in the base layers are whited out too
            hidden = gone | {p for p in plan.absent if p in base_view}
            whiteouts = sorted(p for p in hidden if not any(d in hidden for d in parent_dirs(p)))
            # entries the base layers already provide unchanged are not repeated
            entries = _with_parents([pe for pe in entries
                                     if pe[0].layer >= keep_base or pe[0].path in plan.written], loaded)
        note = f"slim build from {image.digest}: {len(keep)} kept paths"
        if layers == "preserve":
            plain = _preserve_blobs(loaded, entries, plan.written, work, "none")
            config = preserved_config(loaded, note, package_db=bool(plan.written))
        else:
            tar_path = os.path.join(work, "slim.tar")
            write_layer(loaded, entries, tar_path, whiteouts, plan.written)
            plain = [plain_blob(tar_path)]
            config = minimal_config(loaded, history_note=note, keep_base=keep_base,
                                    package_db=bool(plan.written))
    except OSError as exc:
        reaper.remove_tree(work)
        raise EmitError(f"{image.ref}: cannot write the minimal image: {exc}") from None
    except BaseException:
        reaper.remove_tree(work)
        raise
    view = dict(base_view) if keep_base else {}
    for e, _ in entries if not keep_base else minimal_entries(loaded, plan.keep):
        data = plan.written.get(e.path)
        view[e.path] = e if data is None else dataclasses.replace(e, kind=EntryKind.FILE, size=len(data))
    for p in plan.absent:
        view.pop(p, None)
    return LaidImage(work, kept, plain, config, tag, sbom, sbom_doc, view, plan.packages,
                     tuple(sorted(plan.written)))


def _base_view(loaded: Any, keep_base: int) -> tuple[dict[str, FileEntry], set[str]]:
    """With --keep-base N: what the untouched base layers still show (every file they had,
    minus what the slimmed layer must white out), and the paths to white out."""
    if not keep_base:
        return {}, set()
    fs = loaded.rootfs
    gone: set[str] = set()
    base = squash(r.tree for r in loaded.layers[:keep_base])
    for path in sorted(base.entries):
        if path == "/" or fs.get(path) is not None:
            continue
        if not any(d in gone for d in parent_dirs(path)):
            gone.add(path)
    view = {p: e for p, e in base.entries.items()
            if p != "/" and p not in gone and not any(d in gone for d in parent_dirs(p))}
    return view, gone


def kept_entries(loaded: Any, entries: list[Planned], written: dict[str, bytes]) -> list[KeptEntry]:
    """The minimal image's entries for slim.layout: each with the original layer its path
    lives in and the (layer, path) its bytes are read from."""
    fs = loaded.rootfs
    top = len(loaded.layers) - 1
    out = []
    for e, source in entries:
        orig = fs.get(e.path)
        kept = e
        if e.path in written:
            kept = dataclasses.replace(e, kind=EntryKind.FILE, size=len(written[e.path]), linkname="")
        out.append(KeptEntry(kept, orig.layer if orig is not None else top, source, e.layer))
    return out


def _preserve_blobs(loaded: Any, entries: list[Planned], written: dict[str, bytes], work: str,
                    compression: str) -> list[LayerBlob]:
    """Every original layer slimmed in place (slim.layout.preserve_parts), base first."""
    reads = loaded.layers
    parts = preserve_parts(kept_entries(loaded, entries, written), [r.tree.entries for r in reads],
                           chain_ids([r.diff_id for r in reads]), written,
                           [r.tree.whiteouts for r in reads], [r.tree.opaque for r in reads])
    plans = merge_parts([("image", parts)])
    blobs = []
    for part in parts:
        plan = plans[part.key]
        plan = dataclasses.replace(plan, data={p: written[p] for p in plan.paths if p in written})
        blobs.append(write_plan(plan, lambda _name: opened(loaded.image), work, compression).blob)
    return blobs


def preserved_config(loaded: Any, note: str, *, package_db: bool) -> dict[str, Any]:
    """The minimal config for an image whose layers are the original ones slimmed: the
    original history (its non-empty entries describe those layers) plus slim's note as an
    empty-layer entry; no history when the original's does not match its layers."""
    n = len(loaded.layers)
    config = minimal_config(loaded, history_note=note, keep_base=n, package_db=package_db)
    history = config["history"]
    history[-1]["empty_layer"] = True
    if sum(1 for h in history if not h.get("empty_layer")) != n:
        del config["history"]
    return config


def _with_parents(entries: list[Planned], loaded: Any) -> list[Planned]:
    """Upper-layer entries plus the parent directories they need (from the squashed view)."""
    fs = loaded.rootfs
    have = {e.path for e, _ in entries}
    extra: list[Planned] = []
    for e, _ in entries:
        for d in parent_dirs(e.path):
            if d not in have and fs.get(d) is not None:
                have.add(d)
                extra.append((fs.get(d), d))
    return sorted([*entries, *extra], key=lambda pe: pe[0].path)


def _as_blob(raw_path: str, work: str, read: Any) -> LayerBlob:
    """A base layer blob copied verbatim (digest as stored, diff_id as verified on reading)."""
    import hashlib

    sha = hashlib.sha256()
    with open(raw_path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    digest = "sha256:" + sha.hexdigest()
    final = os.path.join(work, digest.split(":")[1])
    os.replace(raw_path, final)
    media = {
        "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
        "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    }.get(read.compression, "application/vnd.oci.image.layer.v1.tar")
    return LayerBlob(final, digest, read.diff_id, os.path.getsize(final), media)


__all__ = ["LAYER_MODES", "BuiltImage", "LaidImage", "MetadataPlan", "Writing", "build_image", "kept_entries", "lay_image",
           "minimal_config", "plan_metadata", "posixpath", "preserved_config"]
