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
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from slim.errors import AnalysisError, EmitError
from slim.fs.rootfs import RootFS
from slim.model import EntryKind, normpath
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


def _safe_dest(root: Path, guest: str) -> Path:
    """`root`/guest, refusing anything that would resolve outside `root` (symlinked parents)."""
    dest = root / guest.lstrip("/")
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(parent)]) != real_root:
        raise EmitError(f"{guest}: would be written outside {root}")
    return dest


def _lay_out(app: AppManifest, fs: RootFS, root: Path, skip: set[str]) -> tuple[list[str], list[str]]:
    """Copy app.files from the image into `root`. Returns (guest paths written, warnings)."""
    written: list[str] = []
    warnings: list[str] = []
    for image_path, guest_path in sorted(set(app.files), key=lambda p: p[1]):
        guest = _guest(guest_path)
        if guest in skip:
            continue
        entry = fs.get(image_path)
        if entry is None:
            warnings.append(f"{image_path}: not in the image, not copied")
            continue
        dest = _safe_dest(root, guest)
        if dest.exists() or dest.is_symlink():
            continue
        if entry.kind is EntryKind.SYMLINK:
            os.symlink(entry.linkname, dest)
        elif entry.kind is EntryKind.DIR:
            dest.mkdir(exist_ok=True)
        elif entry.kind in (EntryKind.FILE, EntryKind.HARDLINK):
            try:
                with fs.open(image_path) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
            except AnalysisError as exc:
                warnings.append(f"{image_path}: contents not available, not copied ({exc})")
                continue
            os.chmod(dest, (entry.mode & 0o777) or 0o644)
        else:
            warnings.append(f"{image_path}: {entry.kind.name.lower()} not supported, skipped")
            continue
        written.append(guest)
    return written, warnings


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
    path.write_text(text, encoding="utf-8")


def render_ops(app: AppManifest, out: Path, fs: RootFS) -> list[str]:
    root = out / "rootfs"
    written, warnings = _lay_out(app, fs, root, set())
    config: dict[str, object] = {
        "Program": app.program,
        "Args": app.argv,
        "Env": dict(sorted(app.env)),
        "Files": sorted(g.lstrip("/") for g in written if not (root / g.lstrip("/")).is_dir()),
        "LocalFilesParentDirectory": str(root.resolve()),
        "TargetRoot": str(root.resolve()),
    }
    if app.cwd not in ("", "/"):
        config["ManifestPassthrough"] = {"cwd": app.cwd}
    _write(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    return warnings


def render_osv(app: AppManifest, out: Path, fs: RootFS) -> list[str]:
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


def render_unikraft(app: AppManifest, out: Path, fs: RootFS) -> list[str]:
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
    """Write `target`'s manifest and rootfs for `app` into `out_dir`; return warnings (sorted
    by kind: constraint checks first, then per-file problems).

    Raises EmitError for an unknown target or when the output cannot be written.
    """
    if target not in RENDERERS:
        raise EmitError(f"{target}: unknown manifest target (choose from {', '.join(TARGETS)})")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        warnings = _constraints(app, target, fs)
        warnings += RENDERERS[target](app, out, fs)
    except OSError as exc:
        raise EmitError(f"{out_dir}: cannot write {target} manifest: {exc}") from exc
    for w in warnings:
        log.info("%s", w)
    return warnings
