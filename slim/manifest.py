"""`slim manifest`: from an analysis to a unikernel manifest, a verdict and the next command.

The flow: the program the container runs (Entrypoint + Cmd resolved with the image's PATH; a
`#!` script becomes its interpreter running the script, as Linux's binfmt_script does, because
a unikernel loads ELF programs), what it does after it starts (a trace's per-program syscalls,
launches and child processes, or else the static upper bound of the kept ELF files), the keep
set as the files, then slim.emitters.unikernel lays them out and renders the target's format
from one extraction of the image.
"""

from __future__ import annotations

import posixpath
import re

from slim import reaper
from slim.emitters.unikernel import AppManifest, ManifestResult, render_manifest
from slim.errors import AnalysisError, UsageError
from slim.fs.rootfs import RootFS
from slim.pipeline import Analysis
from slim.programs import which
from slim.refs import split_name

SHEBANG_MAX = 256


def _program(fs: RootFS, argv: list[str], path_dirs: list[str], cwd: str) -> list[str]:
    """argv with argv[0] the image path of an ELF program: found on PATH, and a `#!` script
    replaced by `interpreter [arg] script` (binfmt_script), at most 4 levels deep."""
    from slim.analyzers.script import parse_shebang

    argv = [which(fs, argv[0], path_dirs, cwd) or argv[0], *argv[1:]]
    for _ in range(4):
        try:
            head = fs.read(argv[0], limit=SHEBANG_MAX)
        except AnalysisError:
            return argv
        shebang = parse_shebang(head)
        if shebang is None:
            return argv
        interp, arg = shebang
        argv = [interp, *([arg] if arg else []), *argv]
    return argv


def _users(analysis: Analysis) -> tuple[list[str], dict[str, list[str]], bool]:
    """(syscall names, syscall → files that need it, upper bound?) of what the app does after
    it starts: the trace's per-program view, else the static set per kept ELF file."""
    if analysis.trace is not None:
        started = analysis.trace.started_syscalls()
        return sorted(started), started, False
    from slim.pipeline import static_syscalls

    if analysis.closure is None:
        return [], {}, True
    static = static_syscalls(analysis.loaded, analysis.closure)
    users: dict[str, list[str]] = {}
    for path, facts in sorted(static.per_file.items()):
        for name in facts.syscalls:
            users.setdefault(name, []).append(path)
    return list(static.names), users, True


def _name(analysis: Analysis, program: str) -> str:
    names = analysis.loaded.image.names
    base = posixpath.basename(split_name(names[0])[0]) if names else posixpath.basename(program)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.") or "app"


def app_manifest(analysis: Analysis, fs: RootFS) -> AppManifest:
    """The neutral manifest of what `analysis`'s image runs; `fs` has the files' contents.

    Raises UsageError for an image with no Entrypoint or Cmd.
    """
    config = analysis.loaded.image.config
    if not config.argv:
        raise UsageError(f"{analysis.loaded.image.ref}: no Entrypoint or Cmd to run")
    cwd = config.workdir or "/"
    argv = _program(fs, list(config.argv), config.path_dirs, cwd)
    names, users, upper = _users(analysis)
    trace = analysis.trace
    keep = analysis.closure.keep if analysis.closure else set()
    ports = sorted({int(p.split("/")[0]) for p in config.exposed_ports
                    if p.split("/")[0].isdigit() and not p.endswith("/udp")})
    return AppManifest(
        program=argv[0], args=tuple(argv), env=tuple(sorted(config.env_dict.items())), cwd=cwd,
        files=tuple((p, p) for p in sorted(keep)), syscalls=tuple(names), upper_bound=upper,
        users=tuple((n, tuple(users.get(n, ()))) for n in names),
        launches=tuple((p, tuple(v)) for p, v in sorted(trace.launches.items())) if trace else (),
        children=tuple(sorted(trace.children.items())) if trace else (),
        ports=tuple(ports), name=_name(analysis, argv[0]))


def write_manifest(analysis: Analysis, target: str, output: str) -> ManifestResult:
    """Render `target`'s manifest of the analyzed image into `output` (a directory).

    The files' contents come from one extraction of the image (an analysis holds only what
    its analyzers read). Raises SlimError subclasses.
    """
    from slim.image import load, prepare_root

    with reaper.temporary_directory(prefix="slim-manifest-") as work:
        root = prepare_root(analysis.loaded.image, work)
        with load(f"rootfs:{root}") as full:
            app = app_manifest(analysis, full.rootfs)
            return render_manifest(app, target, output, full.rootfs)
