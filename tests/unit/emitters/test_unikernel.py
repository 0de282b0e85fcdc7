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
    # an absolute directory link, as /lib -> /usr/lib in usrmerged images: followed on the
    # host it would lead out of the output directory
    (root / "usr/share/data").mkdir(parents=True)
    (root / "usr/share/data/words").write_text("w\n")
    (root / "data").symlink_to("/usr/share/data")
    (root / "script.sh").write_text("#!/bin/prog-dyn -x\necho\n")
    with load_image(f"rootfs:{root}") as li:
        yield li.rootfs, paths


def _app(paths: dict[str, str], program: str, *, syscalls=("write", "read"), **more) -> AppManifest:
    files = [(p, p) for p in ("/", program, paths["libc"], paths["ldso"], "/etc/app.conf",
                              "/bin/prog-link", "/data", "/data/words")]
    return AppManifest(program=program, args=(program, "--flag", "a b"),
                       env=(("PATH", "/bin"), ("MODE", "x")), cwd="/etc",
                       files=tuple(files), syscalls=tuple(syscalls), ports=(8080,),
                       name="demo", **more)


def _marker(out: Path) -> dict:
    return json.loads((out / "slim-manifest.json").read_text())


def test_ops(image, tmp_path: Path) -> None:
    fs, paths = image
    out = tmp_path / "ops"
    result = render_manifest(_app(paths, paths["dynamic"]), "ops", str(out), fs)
    cfg = json.loads((out / "config.json").read_text())
    jsonschema.validate(cfg, OPS_SCHEMA)
    assert cfg["Program"] == "/bin/prog-dyn"
    assert cfg["Args"] == ["/bin/prog-dyn", "--flag", "a b"]
    assert cfg["Env"] == {"MODE": "x", "PATH": "/bin"}
    assert cfg["ManifestPassthrough"] == {"cwd": "/etc"}
    assert cfg["TargetRoot"] == str(out / "rootfs")  # the final directory, not a temp one
    assert "etc/app.conf" in cfg["Files"] and "lib64/ld-linux-x86-64.so.2" in cfg["Files"]
    rootfs = out / "rootfs"
    assert (rootfs / "etc/app.conf").read_text() == "x=1\n"
    assert (rootfs / "bin/prog-link").is_symlink()
    assert (rootfs / "bin/prog-dyn").stat().st_mode & 0o111
    # /data/words went where the image keeps it, under the link's target, inside rootfs/
    assert os.readlink(rootfs / "data") == "usr/share/data"  # relative: never leads out
    assert (rootfs / "usr/share/data/words").read_text() == "w\n"
    assert result.next_commands == (f"ops run /bin/prog-dyn -c {out}/config.json -p 8080",)
    assert f"ops run /bin/prog-dyn -c {out}/config.json -p 8080" in (out / "run.sh").read_text()
    assert _marker(out)["assessment"]["verdict"] == result.assessment.verdict == "likely-runs"


def test_exec_after_start_blocks_but_the_start_does_not(image, tmp_path: Path) -> None:
    fs, paths = image
    started = _app(paths, paths["dynamic"], syscalls=("write",),
                   users=(("write", ("/bin/prog-dyn",)),))
    assert render_manifest(started, "ops", str(tmp_path / "a"), fs).assessment.verdict == "likely-runs"
    runs = _app(paths, paths["dynamic"], syscalls=("write", "execve"),
                users=(("execve", ("/bin/prog-dyn",)),),
                launches=(("/bin/prog-dyn", ("/bin/prog-static",)),))
    a = render_manifest(runs, "ops", str(tmp_path / "b"), fs).assessment
    assert a.verdict == "blocked"
    names = {b.name: b for b in a.blockers}
    assert names["runs other programs"].files == ("/bin/prog-dyn",)
    assert "/bin/prog-static" in names["runs other programs"].why
    assert names["execve"].files == ("/bin/prog-dyn",)


def test_static_upper_bound_needs_a_trace(image, tmp_path: Path) -> None:
    fs, paths = image
    app = _app(paths, paths["dynamic"], syscalls=("write", "ptrace"), upper_bound=True,
               users=(("ptrace", (paths["libc"],)),))
    a = render_manifest(app, "ops", str(tmp_path), fs).assessment
    assert a.verdict == "needs-trace"
    assert [(b.name, b.files) for b in a.blockers] == [("ptrace", (paths["libc"],))]


def test_osv(image, tmp_path: Path) -> None:
    fs, paths = image
    result = render_manifest(_app(paths, paths["dynamic"]), "osv", str(tmp_path), fs)
    lines = (tmp_path / "usr.manifest").read_text().splitlines()
    assert lines[0] == "[manifest]"
    entries = dict(line.split(": ", 1) for line in lines[1:])
    assert entries["/bin/prog-dyn"] == "${MODULE_DIR}/rootfs/bin/prog-dyn"
    assert entries["/bin/prog-link"] == "->prog-dyn"
    assert "/lib/x86_64-linux-gnu/libc.so.6" not in entries  # OSv supplies libc itself
    assert "/lib64/ld-linux-x86-64.so.2" not in entries
    assert not (tmp_path / "rootfs/lib/x86_64-linux-gnu/libc.so.6").exists()
    assert any("OSv provides" in w for w in result.warnings)
    cmdline = (tmp_path / "cmdline").read_text().strip()
    assert cmdline == "--env=MODE=x --env=PATH=/bin --cwd=/etc /bin/prog-dyn --flag 'a b'"
    run = (tmp_path / "rootfs/meta/run.yaml").read_text()
    assert "runtime: native" in run and 'bootcmd: "/bin/prog-dyn --flag \'a b\'"' in run
    assert result.next_commands[1:] == ("capstan package compose demo", "capstan run -f 8080:8080 demo")


def test_osv_refuses_a_static_non_pie(image, tmp_path: Path) -> None:
    fs, paths = image
    a = render_manifest(_app(paths, paths["static"]), "osv", str(tmp_path), fs).assessment
    assert a.verdict == "blocked" and a.blockers[0].name == "PIE"


def test_unikraft(image, tmp_path: Path) -> None:
    fs, paths = image
    result = render_manifest(_app(paths, paths["static"]), "unikraft", str(tmp_path), fs)
    kraft = (tmp_path / "Kraftfile").read_text().splitlines()
    assert kraft[:4] == ["spec: v0.6", 'name: "demo"', "runtime: base:latest", "rootfs: ./Dockerfile"]
    assert kraft[4] == 'cmd: ["/bin/prog-static", "--flag", "a b"]'
    assert '  "MODE": "x"' in kraft
    assert (tmp_path / "Dockerfile").read_text() == "FROM scratch\nCOPY ./rootfs/ /\n"
    assert (tmp_path / "rootfs/bin/prog-static").exists()
    # gcc -static without -static-pie gives ET_EXEC: the elfloader would reject it
    assert result.assessment.blockers[0].name == "PIE"
    assert result.assessment.blockers[0].files == ("/bin/prog-static",)
    assert any("no working-directory key" in w for w in result.warnings)
    assert result.next_commands == (f"kraft run --rm --plat qemu --arch x86_64 -p 8080:8080 {tmp_path}",)


def test_unikraft_pie_ok(image, tmp_path: Path) -> None:
    fs, paths = image
    result = render_manifest(_app(paths, paths["dynamic"]), "unikraft", str(tmp_path), fs)
    assert not any(b.name == "PIE" for b in result.assessment.blockers)  # Debian gcc: PIE


def test_unknown_target_and_bad_guest_path(image, tmp_path: Path) -> None:
    fs, paths = image
    with pytest.raises(EmitError, match="unknown manifest target"):
        render_manifest(_app(paths, paths["static"]), "rumprun", str(tmp_path), fs)
    app = AppManifest(program="/bin/prog-static", files=(("/etc/app.conf", "etc/x"),))
    with pytest.raises(EmitError, match="guest path"):
        render_manifest(app, "ops", str(tmp_path / "o"), fs)
    assert not (tmp_path / "o").exists()  # nothing is left behind


def test_output_replaces_only_a_previous_manifest(image, tmp_path: Path) -> None:
    fs, paths = image
    out = tmp_path / "m"
    render_manifest(_app(paths, paths["dynamic"]), "ops", str(out), fs)
    render_manifest(_app(paths, paths["dynamic"]), "unikraft", str(out), fs)  # ours: replaced
    assert (out / "Kraftfile").exists() and not (out / "config.json").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(EmitError, match="non-empty directory"):
        render_manifest(_app(paths, paths["dynamic"]), "ops", str(other), fs)
    assert (other / "keep.txt").read_text() == "mine"


def test_missing_file_is_a_warning(image, tmp_path: Path) -> None:
    fs, paths = image
    app = AppManifest(program=paths["static"], files=(("/nope", "/nope"),))
    result = render_manifest(app, "unikraft", str(tmp_path), fs)
    assert any(w.startswith("/nope: not in the image") for w in result.warnings)



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
                                   str(out), li.rootfs).warnings
    assert _snapshot(outside) == before
    rootfs = out / "rootfs"
    assert os.readlink(rootfs / "lib") == "usr/lib"
    assert os.readlink(rootfs / "usr/lib/up") == "../../etc"
    assert os.readlink(rootfs / "abs") == "etc/passwd"
    real = os.path.realpath(rootfs)
    for link in (rootfs / "lib", rootfs / "usr/lib/up", rootfs / "abs"):
        assert os.path.realpath(link).startswith(real + os.sep)
    assert any("/loop: symlink loop" in w for w in warnings)
    # /lib/libx.so is below a link: placed where the image has it, never written through it
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
