"""Unikernel manifests from one neutral AppManifest: OPS (Nanos), OSv and Unikraft.

The formats:

* ``ops``: ``config.json`` in the OPS `types.Config` schema (nanovms/ops types/config.go; JSON
  keys are the Go field names, PascalCase): ``Program``, ``Args`` (argv[0] included), ``Env``,
  ``Files`` (relative to ``LocalFilesParentDirectory``, kept as-is in the guest), ``TargetRoot``
  (resolves the ELF's libraries inside our rootfs rather than the host), and the working
  directory through ``ManifestPassthrough.cwd`` (the Nanos manifest root key ``cwd``,
  nanos src/unix/exec.c). Files are laid out under ``DIR/rootfs``. Run: ``ops run -c config.json``.
* ``osv``: ``usr.manifest`` (``[manifest]`` then ``/guest/path: host/path`` lines;
  ``/link: ->target`` for symlinks; osv scripts/manifest_common.py) with host paths under
  ``${MODULE_DIR}/rootfs``, and ``cmdline`` (``--env=K=V``… ``--cwd=DIR`` then the program and
  its arguments; osv loader.cc options). Libraries OSv supplies itself are not shipped
  (osv core/elf.cc "supplied modules").
* ``unikraft``: ``Kraftfile`` (spec v0.6: ``runtime: base:latest`` = app-elfloader,
  ``rootfs: ./Dockerfile``, ``cmd``, ``env``; kraftkit schema/v0.6.json), a ``Dockerfile``
  ``FROM scratch`` + ``COPY ./rootfs/ /``, and ``rootfs/``.

Constraints are checked and returned as warnings: Nanos/OSv/Unikraft are single-process (no
fork/vfork/execve of other programs), the Unikraft elfloader loads only PIE ELFs
(app-elfloader elf_load.c rejects e_type != ET_DYN), OSv must not get its supplied libraries.
The syscall compatibility verdict (slim.syscalls.compat) is added as a warning line too.

The output directory is written as a whole (slim.outputs.atomic_dir): it is checked before any
filesystem call, built in a temporary sibling and renamed into place, and replaces only an
absent path, an empty directory or a previous manifest directory. Inside it nothing is ever
written through a symlink (every parent is created with mkdir and checked with lstat; files
are created O_EXCL|O_NOFOLLOW), and an image symlink is written as the relative path to where
it leads inside the image (resolved with chroot semantics, its last component kept), never
verbatim: `/lib -> /usr/lib` becomes `lib -> usr/lib`, and no link in the output leads out of
it, on the host or in the guest.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shlex
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from slim.errors import AnalysisError, EmitError
from slim.fs.rootfs import RootFS
from slim.model import EntryKind, normpath
from slim.outputs import SparseWriter, atomic_dir
from slim.syscalls.compat import check_compat

log = logging.getLogger(__name__)

TARGETS = ("ops", "osv", "unikraft")
_COMPAT_TARGET = {"ops": "nanos", "osv": "osv", "unikraft": "unikraft"}

# OSv resolves these from its own kernel (osv core/elf.cc supplied modules, §B.2).
OSV_SUPPLIED = frozenset({
    "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2",
    "librt.so.1", "libresolv.so.2", "libaio.so.1", "libcrypt.so.1", "libutil.so",
    "libutil.so.1", "libxenstore.so.3.0", "libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1",
})
SPAWN_SYSCALLS = ("execve", "execveat", "fork", "vfork")
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class AppManifest:
    """What a unikernel needs to run one program, independent of the target format.

    `files` pairs an image path with the guest path it is placed at (usually the same).
    """

    program: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    files: tuple[tuple[str, str], ...] = ()
    syscalls: tuple[str, ...] = field(default_factory=tuple)

    @property
    def argv(self) -> list[str]:
        """argv with argv[0] (the program when `args` is empty)."""
        return list(self.args) if self.args else [self.program]


def _guest(path: str) -> str:
    p = normpath(path)
    if not path.startswith("/") or ".." in path.split("/"):
        raise EmitError(f"{path}: guest path must be absolute and normalized")
    return p


MANIFEST_FILES = frozenset({"config.json", "usr.manifest", "cmdline", "Kraftfile", "Dockerfile"})


def is_manifest_dir(path: str) -> bool:
    """Whether directory `path` is a manifest directory slim wrote (only its files and
    `rootfs/`): the only kind of non-empty directory a manifest output may replace."""
    try:
        names = set(os.listdir(path))
    except OSError:
        return False
    return bool(names & MANIFEST_FILES) and names <= MANIFEST_FILES | {"rootfs"}


def _parent_in(root: Path, guest: str) -> Path | None:
    """The directory `root`/dirname(guest), made with mkdir one component at a time; None
    when a component exists and is not a plain directory (a symlink is never followed)."""
    parent = root
    for name in guest.strip("/").split("/")[:-1]:
        parent = parent / name
        try:
            st = os.lstat(parent)
        except FileNotFoundError:
            os.mkdir(parent, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            return None
    return parent


def _link_target(fs: RootFS, image_path: str, linkname: str) -> str | None:
    """Where the image symlink `image_path` (-> `linkname`) leads, as a path relative to its
    directory: the target resolved inside the image with chroot semantics, its last
    component not followed. None for a loop."""
    where = posixpath.dirname(image_path)
    res = fs.resolve(posixpath.join(where, linkname), follow=False)
    if res.error == "symlink loop":
        return None
    return posixpath.relpath(res.path, where)


def _lay_out(app: AppManifest, fs: RootFS, root: Path, skip: set[str]) -> tuple[list[str], list[str]]:
    """Copy app.files from the image into `root`. Returns (guest paths written, warnings)."""
    written: list[str] = []
    warnings: list[str] = []
    root.mkdir(exist_ok=True)
    for image_path, guest_path in sorted(set(app.files), key=lambda p: p[1]):
        guest = _guest(guest_path)
        if guest in skip or guest == "/":
            continue
        entry = fs.get(image_path)
        if entry is None:
            warnings.append(f"{image_path}: not in the image, not copied")
            continue
        parent = _parent_in(root, guest)
        if parent is None:
            warnings.append(f"{image_path}: a parent directory of {guest} is a symlink or a "
                            "file in the output; not copied")
            continue
        dest = parent / posixpath.basename(guest)
        if os.path.lexists(dest):
            continue
        if entry.kind is EntryKind.SYMLINK:
            target = _link_target(fs, image_path, entry.linkname)
            if target is None:
                warnings.append(f"{image_path}: symlink loop, not copied")
                continue
            os.symlink(target, dest)
        elif entry.kind is EntryKind.DIR:
            os.mkdir(dest, 0o755)
        elif entry.kind in (EntryKind.FILE, EntryKind.HARDLINK):
            try:
                _copy_file(fs, image_path, dest)
            except AnalysisError as exc:
                warnings.append(f"{image_path}: contents not available, not copied ({exc})")
                continue
            os.chmod(dest, (entry.mode & 0o777) or 0o644)
        else:
            warnings.append(f"{image_path}: {entry.kind.name.lower()} not supported, skipped")
            continue
        written.append(guest)
    return written, warnings


def _copy_file(fs: RootFS, image_path: str, dest: Path) -> None:
    """Copy an image file to a new host file (never through a link; zero runs as holes)."""
    with fs.open(image_path) as src:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            writer = SparseWriter(fd)
            while chunk := src.read(_COPY_CHUNK):
                writer.write(chunk)
            writer.close()
        finally:
            os.close(fd)


def _is_pie(fs: RootFS, path: str) -> bool | None:
    """Whether the ELF at `path` is ET_DYN (PIE or static-pie); None when unreadable."""
    try:
        head = fs.read(path, limit=64)
    except AnalysisError:
        return None
    if len(head) < 18 or not head.startswith(b"\x7fELF"):
        return None
    return int.from_bytes(head[16:18], "little") == 3  # e_type ET_DYN


def _constraints(app: AppManifest, target: str, fs: RootFS) -> list[str]:
    warnings: list[str] = []
    spawn = sorted(set(app.syscalls) & set(SPAWN_SYSCALLS))
    if spawn:
        warnings.append(f"{target}: single-process unikernel, but {app.program} may call "
                        f"{', '.join(spawn)} (fork/exec of other programs will fail)")
    if target == "unikraft":
        pie = _is_pie(fs, app.program)
        if pie is False:
            warnings.append(f"{app.program}: not a PIE; the Unikraft elfloader loads only ET_DYN "
                            "executables (rebuild with -fPIE -pie or -static-pie)")
        elif pie is None:
            warnings.append(f"{app.program}: could not check it is a PIE")
        if app.cwd not in ("", "/"):
            warnings.append(f"unikraft: Kraftfile v0.6 has no working-directory key; cwd "
                            f"{app.cwd} is not applied")
    if target == "osv":
        shipped = sorted(g for _, g in app.files if posixpath.basename(g) in OSV_SUPPLIED)
        if shipped:
            warnings.append("osv: not shipping libraries OSv provides itself: "
                            + ", ".join(shipped))
    if app.syscalls:
        report = check_compat(app.syscalls, _COMPAT_TARGET[target])
        warnings.append(f"{report.target}: syscall compatibility {report.verdict}"
                        + (f" ({'; '.join(report.reasons)})" if report.reasons else ""))
    return warnings


def _write(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8") as f:
        f.write(text)


def render_ops(app: AppManifest, out: Path, fs: RootFS, final: str = "") -> list[str]:
    """`final`: where `out` will be once published (the paths config.json names)."""
    root = out / "rootfs"
    written, warnings = _lay_out(app, fs, root, set())
    final_root = os.path.join(final or os.path.realpath(out), "rootfs")
    config: dict[str, object] = {
        "Program": app.program,
        "Args": app.argv,
        "Env": dict(sorted(app.env)),
        "Files": sorted(g.lstrip("/") for g in written if not (root / g.lstrip("/")).is_dir()),
        "LocalFilesParentDirectory": final_root,
        "TargetRoot": final_root,
    }
    if app.cwd not in ("", "/"):
        config["ManifestPassthrough"] = {"cwd": app.cwd}
    _write(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    return warnings


def render_osv(app: AppManifest, out: Path, fs: RootFS, final: str = "") -> list[str]:
    skip = {g for _, g in app.files if posixpath.basename(g) in OSV_SUPPLIED}
    written, warnings = _lay_out(app, fs, out / "rootfs", skip)
    lines = ["[manifest]"]
    for guest in sorted(written):
        dest = out / "rootfs" / guest.lstrip("/")
        if dest.is_symlink():
            lines.append(f"{guest}: ->{os.readlink(dest)}")
        elif dest.is_dir():
            continue
        else:
            lines.append(f"{guest}: ${{MODULE_DIR}}/rootfs{guest}")
    _write(out / "usr.manifest", "\n".join(lines) + "\n")
    parts = [f"--env={k}={v}" for k, v in sorted(app.env)]
    if app.cwd not in ("", "/"):
        parts.append(f"--cwd={app.cwd}")
    argv = app.argv
    argv[0] = app.program  # OSv runs the path named on the command line
    if any(any(c.isspace() for c in a) for a in argv + parts):
        warnings.append("osv: an argument or env value contains whitespace; check the quoting "
                        "of the cmdline file")
    parts += [shlex.quote(a) for a in argv]
    _write(out / "cmdline", " ".join(parts) + "\n")
    return warnings


def _yaml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def render_unikraft(app: AppManifest, out: Path, fs: RootFS, final: str = "") -> list[str]:
    _, warnings = _lay_out(app, fs, out / "rootfs", set())
    cmd = app.argv
    cmd[0] = app.program
    lines = ["spec: v0.6", "runtime: base:latest", "rootfs: ./Dockerfile",
             "cmd: [" + ", ".join(_yaml_str(a) for a in cmd) + "]"]
    if app.env:
        lines.append("env:")
        lines += [f"  {_yaml_str(k)}: {_yaml_str(v)}" for k, v in sorted(app.env)]
    _write(out / "Kraftfile", "\n".join(lines) + "\n")
    _write(out / "Dockerfile", "FROM scratch\nCOPY ./rootfs/ /\n")
    return warnings


RENDERERS = {"ops": render_ops, "osv": render_osv, "unikraft": render_unikraft}


@dataclass(frozen=True)
class KernelSize:
    """A target's kernel image size and where the number comes from."""

    target: str
    bytes: int
    source: str


def kernel_size(target: str) -> KernelSize:
    """The `[kernel]` table of rules/unikernels/<target>.toml (nanos for ops). Raises RuleError."""
    import tomllib

    from slim.errors import RuleError
    from slim.rules import rules_dir

    name = _COMPAT_TARGET.get(target, target)
    path = rules_dir() / "unikernels" / f"{name}.toml"
    try:
        kernel = tomllib.loads(path.read_text(encoding="utf-8")).get("kernel")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"{path}: cannot read: {exc}") from None
    if not isinstance(kernel, dict) or not isinstance(kernel.get("bytes"), int) or kernel["bytes"] <= 0:
        raise RuleError(f"{path}: [kernel] bytes must be a positive integer")
    return KernelSize(name, kernel["bytes"], str(kernel.get("source", "")))


def manifest_files(target: str, paths: Iterable[str]) -> list[str]:
    """The image paths `target`'s manifest ships (OSv supplies some libraries itself)."""
    if target == "osv":
        return [p for p in paths if posixpath.basename(p) not in OSV_SUPPLIED]
    return list(paths)


def render_manifest(app: AppManifest, target: str, out_dir: str, fs: RootFS) -> list[str]:
    """Write `target`'s manifest and rootfs for `app` as the directory `out_dir`, replacing
    it as a whole (see the module doc); return warnings (sorted by kind: constraint checks
    first, then per-file problems).

    Raises EmitError for an unknown target, a bad guest path, or when the output cannot be
    written (nothing is left at `out_dir` then).
    """
    if target not in RENDERERS:
        raise EmitError(f"{target}: unknown manifest target (choose from {', '.join(TARGETS)})")
    for _, guest in app.files:
        _guest(guest)  # before any filesystem call
    final = os.path.realpath(out_dir)
    with atomic_dir(out_dir, what=f"{target} manifest", is_previous=is_manifest_dir) as tmp:
        try:
            warnings = _constraints(app, target, fs)
            warnings += RENDERERS[target](app, Path(tmp), fs, final)
        except OSError as exc:
            raise EmitError(f"{out_dir}: cannot write {target} manifest: "
                            f"{exc.strerror or exc}") from None
    for w in warnings:
        log.info("%s", w)
    return warnings
