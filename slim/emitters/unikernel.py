"""Unikernel manifests from one neutral AppManifest: OPS (Nanos), OSv and Unikraft.

The formats:

* ``ops``: ``config.json`` in the OPS `types.Config` schema (nanovms/ops types/config.go; JSON
  keys are the Go field names, PascalCase): ``Program``, ``Args`` (argv[0] included), ``Env``,
  ``Files`` (relative to ``LocalFilesParentDirectory``, kept as-is in the guest), ``TargetRoot``
  (resolves the ELF and its libraries inside our rootfs rather than the host: ops
  lepton/manifest.go ``AddUserProgram`` joins an absolute program path to TargetRoot), and the
  working directory through ``ManifestPassthrough.cwd`` (the Nanos manifest root key ``cwd``,
  nanos src/unix/exec.c). Files are laid out under ``DIR/rootfs``. Next:
  ``ops run PROGRAM -c DIR/config.json [-p PORT]`` (ops cmd/run.go: the ELF argument is required
  and becomes ``Program``).
* ``osv``: ``usr.manifest`` (``[manifest]`` then ``/guest/path: host/path`` lines;
  ``/link: ->target`` for symlinks; osv scripts/manifest_common.py) with host paths under
  ``${MODULE_DIR}/rootfs``, and ``cmdline`` (``--env=K=V``… ``--cwd=DIR`` then the program and
  its arguments; osv loader.cc options). ``DIR/rootfs`` is also a Capstan package
  (capstan Documentation/RuntimeNative.md: the project directory holds the guest files plus
  ``meta/package.yaml`` and ``meta/run.yaml`` with ``runtime: native`` and a ``bootcmd``).
  Next: ``capstan package compose NAME`` then ``capstan run NAME``. Libraries OSv supplies
  itself are not shipped (osv core/elf.cc "supplied modules").
* ``unikraft``: ``Kraftfile`` (spec v0.6: ``runtime: base:latest`` = app-elfloader,
  ``rootfs: ./Dockerfile``, ``cmd``, ``env``; kraftkit schema/v0.6.json), a ``Dockerfile``
  ``FROM scratch`` + ``COPY ./rootfs/ /``, and ``rootfs/``. Next:
  ``kraft run --rm --plat qemu --arch x86_64 DIR``.

Every output directory also holds ``run.sh`` (the next commands, runnable) and
``slim-manifest.json`` (target, verdict, blockers with the files that need them, the next
command); the latter marks the directory as slim's, so a second run may replace it.

The layout follows the image, never the host: each path's parent is resolved inside the image
(chroot semantics, symlinks included), the root itself is not a file to copy, and a host
symlink on the way is refused, so nothing is written outside ``DIR``.

Verdicts (`assess`) combine the syscall check (slim.syscalls.compat) with what the targets
cannot do at all: run other programs or processes (Nanos, OSv and the Unikraft elfloader are
single-process), load a non-PIE (the Unikraft elfloader: app-elfloader elf_load.c rejects
e_type != ET_DYN), or load a static non-PIE (OSv runs PIE or dynamically linked executables,
capstan RuntimeNative.md). Only what the program does after it starts counts: the execve that
starts it is not "running another program".

The output directory is written as a whole (slim.outputs.atomic_dir): guest paths are checked
before any filesystem call, the directory is built in a temporary sibling and renamed into
place, and replaces only an absent path, an empty directory or a previous manifest directory.
Inside it nothing is ever written through a symlink (parents are made one component at a time
and a symlink on the way is refused; files are created O_EXCL|O_NOFOLLOW, zero runs as holes),
and an image symlink is written as the relative path to where it leads inside the image
(resolved with chroot semantics, its last component kept), never verbatim: `/lib -> /usr/lib`
becomes `lib -> usr/lib`, and no link in the output leads out of it, on the host or in the guest.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slim.elf import elf_errors, read_elf
from slim.errors import AnalysisError, EmitError
from slim.fs.rootfs import RootFS
from slim.model import EntryKind, normpath
from slim.outputs import SparseWriter, atomic_dir
from slim.syscalls.compat import Blocker, CompatReport, check_compat, worst

log = logging.getLogger(__name__)

TARGETS = ("ops", "osv", "unikraft")
COMPAT_TARGET = {"ops": "nanos", "osv": "osv", "unikraft": "unikraft"}
MARKER = "slim-manifest.json"

# OSv resolves these from its own kernel (osv core/elf.cc supplied modules, §B.2).
OSV_SUPPLIED = frozenset({
    "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2",
    "librt.so.1", "libresolv.so.2", "libaio.so.1", "libcrypt.so.1", "libutil.so",
    "libutil.so.1", "libxenstore.so.3.0", "libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1",
})
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class AppManifest:
    """What a unikernel needs to run one program, independent of the target format.

    `files` pairs an image path with the guest path it is placed at (usually the same).
    `syscalls` is what the app does after it starts (traced) or may do (`upper_bound`: a
    static set); `users` maps a syscall to the files that need it; `launches` (program →
    programs it executed) and `children` (program → processes it started) come from a trace.
    """

    program: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    files: tuple[tuple[str, str], ...] = ()
    syscalls: tuple[str, ...] = field(default_factory=tuple)
    upper_bound: bool = False
    users: tuple[tuple[str, tuple[str, ...]], ...] = ()
    launches: tuple[tuple[str, tuple[str, ...]], ...] = ()
    children: tuple[tuple[str, int], ...] = ()
    ports: tuple[int, ...] = ()
    name: str = "app"

    @property
    def argv(self) -> list[str]:
        """argv with argv[0] (the program when `args` is empty)."""
        return list(self.args) if self.args else [self.program]


@dataclass(frozen=True)
class Assessment:
    """Whether the app can run on a target as it is: the verdict, what blocks it (syscalls
    and features, each with the files that need it) and the syscall report behind it."""

    target: str
    verdict: str
    blockers: tuple[Blocker, ...]
    compat: CompatReport | None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "verdict": self.verdict,
                "upper_bound": bool(self.compat and self.compat.upper_bound),
                "blockers": [b.to_dict() for b in self.blockers],
                "syscalls": self.compat.to_dict() if self.compat else None}


@dataclass(frozen=True)
class ManifestResult:
    """What `render_manifest` wrote: the assessment, warnings and the next command."""

    target: str
    assessment: Assessment
    warnings: tuple[str, ...]
    next_commands: tuple[str, ...]
    paths: int
    syscalls: int = 0  # how many syscalls were checked (after the app started, or static)


# -- assessment ------------------------------------------------------------------------------
def _elf_kind(fs: RootFS, path: str) -> str | None:
    """"pie", "dynamic" (ET_EXEC with PT_INTERP), "static" (ET_EXEC, no PT_INTERP), or None
    when `path` is no readable ELF."""
    try:
        with elf_errors(path):
            info = read_elf(fs, path)
    except AnalysisError:
        return None
    if info.etype == "DYN":
        return "pie"
    return "dynamic" if info.interp else "static"


def _process_blockers(app: AppManifest) -> list[Blocker]:
    """A traced app that runs other programs or starts processes cannot run single-process."""
    out = []
    for prog, launched in app.launches:
        out.append(Blocker("runs other programs", "blocked",
                           f"{prog} executes {', '.join(launched)} after it starts; the target "
                           "runs one program", (prog,)))
    for prog, n in app.children:
        if not any(prog == p for p, _ in app.launches):
            out.append(Blocker("starts other processes", "blocked",
                               f"{prog} forks {n} process{'es' if n != 1 else ''}; the target "
                               "runs a single process", (prog,)))
    return out


def _elf_blockers(app: AppManifest, target: str, fs: RootFS) -> list[Blocker]:
    kind = _elf_kind(fs, app.program)
    if kind is None:
        return [Blocker("ELF program", "blocked", f"{app.program} is not an ELF executable "
                        "slim could read; the target loads only ELF programs", (app.program,))]
    if target == "unikraft" and kind != "pie":
        return [Blocker("PIE", "blocked", "the Unikraft elfloader loads only position-"
                        "independent executables (rebuild with -fPIE -pie or -static-pie)",
                        (app.program,))]
    if target == "osv" and kind == "static":
        return [Blocker("PIE", "blocked", "OSv runs PIE or dynamically linked executables, "
                        "not a static non-PIE (rebuild with -static-pie or link dynamically)",
                        (app.program,))]
    return []


def assess(app: AppManifest, target: str, fs: RootFS) -> Assessment:
    """The verdict for `app` on `target` (ops, osv or unikraft). Raises RuleError when a
    support table is broken."""
    compat = None
    if app.syscalls:
        compat = check_compat(app.syscalls, COMPAT_TARGET[target], users=dict(app.users),
                              upper_bound=app.upper_bound)
    blockers = _elf_blockers(app, target, fs) + _process_blockers(app)
    blockers += compat.blockers if compat else []
    verdict = worst("likely-runs", *(b.verdict for b in blockers))
    if compat is None:
        verdict = worst(verdict, "needs-trace")  # no syscall set: nothing was checked
    return Assessment(target, verdict, tuple(blockers), compat)


# -- layout ----------------------------------------------------------------------------------
def _guest(path: str) -> str:
    if not path.startswith("/") or ".." in path.split("/"):
        raise EmitError(f"{path}: guest path must be absolute and normalized")
    return normpath(path)


def _host_dir(root: Path, guest_dir: str) -> Path:
    """`root`/guest_dir as real directories, created as needed; a symlink on the way (which
    would lead outside `root`) is refused."""
    cur = root
    for part in [p for p in guest_dir.split("/") if p]:
        cur = cur / part
        if cur.is_symlink():
            raise EmitError(f"{guest_dir}: would be written through the symlink {cur}")
        if not cur.exists():
            cur.mkdir(mode=0o755)
        elif not cur.is_dir():
            raise EmitError(f"{guest_dir}: {cur} is not a directory")
    return cur


def _link_target(fs: RootFS, image_path: str, linkname: str) -> str | None:
    """Where the image symlink `image_path` (-> `linkname`) leads, as a path relative to its
    directory: the target resolved inside the image with chroot semantics, its last
    component not followed. None for a loop."""
    where = posixpath.dirname(image_path)
    res = fs.resolve(posixpath.join(where, linkname), follow=False)
    if res.error == "symlink loop":
        return None
    return posixpath.relpath(res.path, where)


def _place(fs: RootFS, image_path: str, entry_kind: EntryKind, linkname: str, mode: int,
           dest: Path) -> str | None:
    """Create one entry at `dest` (never following a host symlink); a warning or None. An
    image symlink becomes the relative path to where it leads inside the image."""
    if entry_kind is EntryKind.SYMLINK:
        target = _link_target(fs, image_path, linkname)
        if target is None:
            return f"{image_path}: symlink loop, not copied"
        os.symlink(target, dest)
    elif entry_kind is EntryKind.DIR:
        dest.mkdir(mode=0o755)
    elif entry_kind in (EntryKind.FILE, EntryKind.HARDLINK):
        try:
            _copy_file(fs, image_path, dest)
        except AnalysisError as exc:
            return f"{image_path}: contents not available, not copied ({exc})"
        os.chmod(dest, (mode & 0o777) or 0o644)
    else:
        return f"{image_path}: {entry_kind.name.lower()} not supported, skipped"
    return None


def lay_out(files: tuple[tuple[str, str], ...], fs: RootFS, root: Path,
            skip: set[str]) -> tuple[list[str], list[str]]:
    """Copy `files` (image path, guest path) from the image into `root`, each at its parent's
    path as resolved inside the image. Returns (guest paths written, warnings). Raises
    EmitError for a path that would leave `root`."""
    written: list[str] = []
    warnings: list[str] = []
    root.mkdir(parents=True, exist_ok=True)
    for image_path, guest_path in sorted(set(files), key=lambda p: p[1]):
        guest = _guest(guest_path)
        if guest == "/" or guest in skip:
            continue  # the root is the output directory itself
        parent = fs.realpath(posixpath.dirname(guest))
        guest = posixpath.join(parent, posixpath.basename(guest))
        entry = fs.get(image_path) or fs.get(guest)  # a path through a directory link
        if entry is None:
            warnings.append(f"{image_path}: not in the image, not copied")
            continue
        dest = _host_dir(root, parent) / posixpath.basename(guest)
        if dest.exists() or dest.is_symlink():
            continue
        problem = _place(fs, image_path, entry.kind, entry.linkname, entry.mode, dest)
        if problem:
            warnings.append(problem)
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


# -- renderers -------------------------------------------------------------------------------
def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _yaml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def _files_of(root: Path, written: list[str]) -> list[str]:
    return sorted(g.lstrip("/") for g in written if not (root / g.lstrip("/")).is_dir()
                  or (root / g.lstrip("/")).is_symlink())


def render_ops(app: AppManifest, out: Path, fs: RootFS, final: Path) -> tuple[list[str], list[str]]:
    """config.json + rootfs/; returns (warnings, next commands)."""
    root = out / "rootfs"
    written, warnings = lay_out(app.files, fs, root, set())
    config: dict[str, object] = {
        "Program": app.program,
        "Args": app.argv,
        "Env": dict(sorted(app.env)),
        "Files": _files_of(root, written),
        "LocalFilesParentDirectory": str(final / "rootfs"),
        "TargetRoot": str(final / "rootfs"),
    }
    if app.cwd not in ("", "/"):
        config["ManifestPassthrough"] = {"cwd": app.cwd}
    _write(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    ports = "".join(f" -p {p}" for p in app.ports)
    return warnings, [f"ops run {shlex.quote(app.program)} -c {shlex.quote(str(final / 'config.json'))}{ports}"]


def _osv_cmdline(app: AppManifest) -> tuple[str, list[str]]:
    parts = [f"--env={k}={v}" for k, v in sorted(app.env)]
    if app.cwd not in ("", "/"):
        parts.append(f"--cwd={app.cwd}")
    argv = app.argv
    argv[0] = app.program  # OSv runs the path named on the command line
    warnings = []
    if any(any(c.isspace() for c in a) for a in argv + parts):
        warnings.append("osv: an argument or env value contains whitespace; check the quoting "
                        "of the cmdline file")
    return " ".join(parts + [shlex.quote(a) for a in argv]), warnings


def render_osv(app: AppManifest, out: Path, fs: RootFS, final: Path) -> tuple[list[str], list[str]]:
    """usr.manifest + cmdline + rootfs/ (a Capstan package); returns (warnings, next commands)."""
    skip = {g for _, g in app.files if posixpath.basename(g) in OSV_SUPPLIED}
    root = out / "rootfs"
    written, warnings = lay_out(app.files, fs, root, skip)
    if skip:
        warnings.insert(0, "osv: not shipping libraries OSv provides itself: " + ", ".join(sorted(skip)))
    lines = ["[manifest]"]
    for guest in sorted(written):
        dest = root / guest.lstrip("/")
        if dest.is_symlink():
            lines.append(f"{guest}: ->{os.readlink(dest)}")
        elif not dest.is_dir():
            lines.append(f"{guest}: ${{MODULE_DIR}}/rootfs{guest}")
    _write(out / "usr.manifest", "\n".join(lines) + "\n")
    cmdline, more = _osv_cmdline(app)
    warnings += more
    _write(out / "cmdline", cmdline + "\n")
    # the Capstan package: rootfs/ is the project directory (RuntimeNative.md)
    meta = _host_dir(root, "/meta")
    _write(meta / "package.yaml", f"name: {_yaml_str(app.name)}\ntitle: {_yaml_str(app.name + ' (slim)')}\n"
           "author: \"slim manifest\"\n")
    boot = " ".join(shlex.quote(a) for a in [app.program, *app.argv[1:]])
    run = ["runtime: native", "config_set:", "  default:", f"    bootcmd: {_yaml_str(boot)}"]
    if app.env:
        run.append("    env:")
        run += [f"      {_yaml_str(k)}: {_yaml_str(v)}" for k, v in sorted(app.env)]
    run.append("config_set_default: default")
    _write(meta / "run.yaml", "\n".join(run) + "\n")
    if app.cwd not in ("", "/"):
        warnings.append(f"osv: capstan's run.yaml has no working-directory key; cwd {app.cwd} "
                        "is applied only by the cmdline file (--cwd)")
    fwd = "".join(f" -f {p}:{p}" for p in app.ports)
    name = shlex.quote(app.name)
    return warnings, [f"cd {shlex.quote(str(final / 'rootfs'))}", f"capstan package compose {name}",
                      f"capstan run{fwd} {name}"]


def render_unikraft(app: AppManifest, out: Path, fs: RootFS, final: Path) -> tuple[list[str], list[str]]:
    """Kraftfile + Dockerfile + rootfs/; returns (warnings, next commands)."""
    _, warnings = lay_out(app.files, fs, out / "rootfs", set())
    cmd = app.argv
    cmd[0] = app.program
    lines = ["spec: v0.6", f"name: {_yaml_str(app.name)}", "runtime: base:latest",
             "rootfs: ./Dockerfile", "cmd: [" + ", ".join(_yaml_str(a) for a in cmd) + "]"]
    if app.env:
        lines.append("env:")
        lines += [f"  {_yaml_str(k)}: {_yaml_str(v)}" for k, v in sorted(app.env)]
    _write(out / "Kraftfile", "\n".join(lines) + "\n")
    _write(out / "Dockerfile", "FROM scratch\nCOPY ./rootfs/ /\n")
    if app.cwd not in ("", "/"):
        warnings.append(f"unikraft: Kraftfile v0.6 has no working-directory key; cwd "
                        f"{app.cwd} is not applied")
    ports = "".join(f" -p {p}:{p}" for p in app.ports)
    return warnings, [f"kraft run --rm --plat qemu --arch x86_64{ports} {shlex.quote(str(final))}"]


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

    name = COMPAT_TARGET.get(target, target)
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


def is_previous_manifest(path: str) -> bool:
    """Whether `path` is a directory slim wrote with `slim manifest` (it has our marker)."""
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as f:
            return json.load(f).get("generator") == "slim manifest"
    except (OSError, ValueError, AttributeError):
        return False


def _run_script(target: str, commands: list[str], assessment: Assessment) -> str:
    lines = ["#!/bin/sh", f"# Written by `slim manifest --target {target}`: the commands that build",
             f"# and boot this unikernel. slim's verdict: {assessment.verdict} (see {MARKER}).",
             "set -e"]
    return "\n".join(lines + commands) + "\n"


def render_manifest(app: AppManifest, target: str, out_dir: str, fs: RootFS) -> ManifestResult:
    """Write `target`'s manifest, rootfs, run.sh and slim-manifest.json as the directory
    `out_dir` (an absent or empty directory, or a previous `slim manifest` output, replaced
    whole; see the module doc).

    Raises EmitError for an unknown target, a bad guest path, or when the output cannot be
    written (nothing is left at `out_dir` then).
    """
    if target not in RENDERERS:
        raise EmitError(f"{target}: unknown manifest target (choose from {', '.join(TARGETS)})")
    for _, guest in app.files:
        _guest(guest)  # every guest path is checked before any filesystem call
    final = Path(os.path.realpath(out_dir))
    assessment = assess(app, target, fs)
    with atomic_dir(out_dir, what="manifest directory", is_previous=is_previous_manifest) as tmp:
        out = Path(tmp)
        try:
            warnings, commands = RENDERERS[target](app, out, fs, final)
            _write(out / "run.sh", _run_script(target, commands, assessment), 0o755)
            doc = {"generator": "slim manifest", "target": target, "program": app.program,
                   "argv": app.argv, "next": commands, "assessment": assessment.to_dict(),
                   "warnings": warnings}
            _write(out / MARKER, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise EmitError(f"{out_dir}: cannot write {target} manifest: {exc}") from exc
    for w in warnings:
        log.info("%s", w)
    return ManifestResult(target, assessment, tuple(warnings), tuple(commands), len(app.files),
                          len(set(app.syscalls)))
