from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from slim.emitters.unikernel import AppManifest, render_manifest
from slim.errors import EmitError
from slim.pipeline import load_image
from tests.unit.syscalls.helpers import build_rootfs

# The subset of ops types.Config we write (nanovms/ops types/config.go field names).
OPS_SCHEMA = {
    "type": "object",
    "required": ["Program", "Args", "Env", "Files"],
    "additionalProperties": False,
    "properties": {
        "Program": {"type": "string", "pattern": "^/"},
        "Args": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "Env": {"type": "object", "additionalProperties": {"type": "string"}},
        "Files": {"type": "array", "items": {"type": "string", "pattern": "^[^/]"}},
        "LocalFilesParentDirectory": {"type": "string"},
        "TargetRoot": {"type": "string"},
        "ManifestPassthrough": {"type": "object"},
    },
}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("uk") / "root"
    root.mkdir()
    paths = build_rootfs(root)
    (root / "etc").mkdir()
    (root / "etc" / "app.conf").write_text("x=1\n")
    (root / "bin" / "prog-link").symlink_to("prog-dyn")
    with load_image(f"rootfs:{root}") as li:
        yield li.rootfs, paths


def _app(paths: dict[str, str], program: str, *, syscalls=("write", "read")) -> AppManifest:
    files = [(p, p) for p in (program, paths["libc"], paths["ldso"], "/etc/app.conf",
                              "/bin/prog-link")]
    return AppManifest(program=program, args=(program, "--flag", "a b"),
                       env=(("PATH", "/bin"), ("MODE", "x")), cwd="/etc",
                       files=tuple(files), syscalls=tuple(syscalls))


def test_ops(image, tmp_path: Path) -> None:
    fs, paths = image
    warnings = render_manifest(_app(paths, paths["dynamic"]), "ops", str(tmp_path), fs)
    cfg = json.loads((tmp_path / "config.json").read_text())
    jsonschema.validate(cfg, OPS_SCHEMA)
    assert cfg["Program"] == "/bin/prog-dyn"
    assert cfg["Args"] == ["/bin/prog-dyn", "--flag", "a b"]
    assert cfg["Env"] == {"MODE": "x", "PATH": "/bin"}
    assert cfg["ManifestPassthrough"] == {"cwd": "/etc"}
    assert "etc/app.conf" in cfg["Files"] and "lib64/ld-linux-x86-64.so.2" in cfg["Files"]
    rootfs = tmp_path / "rootfs"
    assert (rootfs / "etc/app.conf").read_text() == "x=1\n"
    assert (rootfs / "bin/prog-link").is_symlink()
    assert (rootfs / "bin/prog-dyn").stat().st_mode & 0o111
    assert any(w.startswith("nanos: syscall compatibility") for w in warnings)


def test_ops_warns_about_exec(image, tmp_path: Path) -> None:
    fs, paths = image
    app = _app(paths, paths["static"], syscalls=("write", "execve"))
    warnings = render_manifest(app, "ops", str(tmp_path), fs)
    assert any("single-process" in w and "execve" in w for w in warnings)


def test_osv(image, tmp_path: Path) -> None:
    fs, paths = image
    warnings = render_manifest(_app(paths, paths["dynamic"]), "osv", str(tmp_path), fs)
    lines = (tmp_path / "usr.manifest").read_text().splitlines()
    assert lines[0] == "[manifest]"
    entries = dict(line.split(": ", 1) for line in lines[1:])
    assert entries["/bin/prog-dyn"] == "${MODULE_DIR}/rootfs/bin/prog-dyn"
    assert entries["/bin/prog-link"] == "->prog-dyn"
    assert "/lib/x86_64-linux-gnu/libc.so.6" not in entries  # OSv supplies libc itself
    assert "/lib64/ld-linux-x86-64.so.2" not in entries
    assert not (tmp_path / "rootfs/lib/x86_64-linux-gnu/libc.so.6").exists()
    assert any("OSv provides" in w for w in warnings)
    cmdline = (tmp_path / "cmdline").read_text().strip()
    assert cmdline == "--env=MODE=x --env=PATH=/bin --cwd=/etc /bin/prog-dyn --flag 'a b'"


def test_unikraft(image, tmp_path: Path) -> None:
    fs, paths = image
    warnings = render_manifest(_app(paths, paths["static"]), "unikraft", str(tmp_path), fs)
    kraft = (tmp_path / "Kraftfile").read_text().splitlines()
    assert kraft[:3] == ["spec: v0.6", "runtime: base:latest", "rootfs: ./Dockerfile"]
    assert kraft[3] == 'cmd: ["/bin/prog-static", "--flag", "a b"]'
    assert '  "MODE": "x"' in kraft
    assert (tmp_path / "Dockerfile").read_text() == "FROM scratch\nCOPY ./rootfs/ /\n"
    assert (tmp_path / "rootfs/bin/prog-static").exists()
    # gcc -static without -static-pie gives ET_EXEC: the elfloader would reject it
    assert any("not a PIE" in w for w in warnings)
    assert any("no working-directory key" in w for w in warnings)


def test_unikraft_pie_ok(image, tmp_path: Path) -> None:
    fs, paths = image
    warnings = render_manifest(_app(paths, paths["dynamic"]), "unikraft", str(tmp_path), fs)
    assert not any("not a PIE" in w for w in warnings)  # Debian gcc builds PIE by default


def test_unknown_target_and_bad_guest_path(image, tmp_path: Path) -> None:
    fs, paths = image
    with pytest.raises(EmitError, match="unknown manifest target"):
        render_manifest(_app(paths, paths["static"]), "rumprun", str(tmp_path), fs)
    app = AppManifest(program="/bin/prog-static", files=(("/etc/app.conf", "etc/x"),))
    with pytest.raises(EmitError, match="guest path"):
        render_manifest(app, "ops", str(tmp_path / "o"), fs)


def test_missing_file_is_a_warning(image, tmp_path: Path) -> None:
    fs, paths = image
    app = AppManifest(program=paths["static"], files=(("/nope", "/nope"),))
    warnings = render_manifest(app, "unikraft", str(tmp_path), fs)
    assert any(w.startswith("/nope: not in the image") for w in warnings)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_mode, p.lstat().st_size) for p in root.rglob("*")}


def test_links_never_lead_out_of_the_output(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/libx.so").write_bytes(b"x")
    (root / "lib").symlink_to("/usr/lib")  # absolute: the image root, not the host's
    (root / "usr/lib/up").symlink_to("../../../../../../etc")  # `..` stops at the image root
    (root / "loop").symlink_to("loop/x")  # resolving it never ends
    (root / "abs").symlink_to("/etc/passwd")
    outside = tmp_path / "outside"
    outside.mkdir()
    files = tuple((p, p) for p in ("/lib", "/usr/lib/libx.so", "/usr/lib/up", "/loop", "/abs"))
    files += (("/usr/lib/libx.so", "/lib/libx.so"),)  # a guest path below a link
    with load_image(f"rootfs:{root}") as li:
        before = _snapshot(tmp_path / "outside")
        out = tmp_path / "out"
        warnings = render_manifest(AppManifest(program="/usr/lib/libx.so", files=files), "ops",
                                   str(out), li.rootfs)
    assert _snapshot(outside) == before
    rootfs = out / "rootfs"
    assert os.readlink(rootfs / "lib") == "usr/lib"
    assert os.readlink(rootfs / "usr/lib/up") == "../../etc"
    assert os.readlink(rootfs / "abs") == "etc/passwd"
    real = os.path.realpath(rootfs)
    for link in (rootfs / "lib", rootfs / "usr/lib/up", rootfs / "abs"):
        assert os.path.realpath(link).startswith(real + os.sep)
    assert any("/loop: symlink loop" in w for w in warnings)
    # /lib/libx.so is below a link in the output: not written through it
    assert any(w.startswith("/usr/lib/libx.so: a parent directory of /lib/libx.so is a symlink")
               for w in warnings)
    assert (rootfs / "usr/lib/libx.so").read_bytes() == b"x"


def test_output_is_replaced_whole_and_only_when_it_is_a_manifest(image, tmp_path: Path) -> None:
    fs, paths = image
    out = tmp_path / "out"
    render_manifest(_app(paths, paths["static"]), "unikraft", str(out), fs)
    render_manifest(_app(paths, paths["static"]), "osv", str(out), fs)  # a previous manifest
    assert (out / "usr.manifest").exists() and not (out / "Kraftfile").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(EmitError, match="not a previous slim"):
        render_manifest(_app(paths, paths["static"]), "ops", str(mine), fs)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
