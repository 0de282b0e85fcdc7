"""Hostile destinations and caches: outputs that cannot be written (procfs, sysfs, a file as
a parent, a dangling link, a name too long), outputs that must not be replaced, manifest
directories, and cache directories that are files, unwritable, garbage or links."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.hostile import forge
from tests.hostile.forge import APP_CONFIG, T, app_files
from tests.hostile.harness import Sandbox, baseline, check, run_slim


def _sample(box: Sandbox) -> str:
    return str(forge.copy_sample("hello-glibc", box.inputs / "img.tar"))


def _impossible(box: Sandbox) -> dict[str, str]:
    (box.root / "afile").write_text("x")
    os.symlink("/nonexistent/dir/report.json", box.out / "dangling")
    return {
        "procfs": "/proc/slim-hostile-report",
        "sysfs": "/sys/kernel/slim-hostile-report",
        "parent-is-a-file": str(box.root / "afile" / "report.json"),
        "no-parent": str(box.root / "missing" / "dir" / "report.json"),
        "dangling-link": str(box.out / "dangling"),
        "name-too-long": str(box.out / ("n" * 300)),
        "a-directory": str(box.out),
    }


IMPOSSIBLE = ["procfs", "sysfs", "parent-is-a-file", "no-parent", "dangling-link",
              "name-too-long", "a-directory"]


@pytest.mark.parametrize("where", IMPOSSIBLE)
def test_analyze_to_an_impossible_path(box: Sandbox, where: str) -> None:
    ref = _sample(box)
    target = _impossible(box)[where]
    before = baseline(box)
    run = run_slim(box, "analyze", ref, "-f", "json", "-o", target)
    check(box, run, rc=3, error=r"^/\S*: ", before=before)


@pytest.mark.parametrize("where", ["procfs", "sysfs", "parent-is-a-file", "a-directory"])
def test_seccomp_to_an_impossible_path(box: Sandbox, where: str) -> None:
    ref = _sample(box)
    target = _impossible(box)[where]
    before = baseline(box)
    run = run_slim(box, "seccomp", ref, "-o", target)
    check(box, run, rc=3, error=r"^/\S*: ", before=before)


@pytest.mark.parametrize("where", ["procfs", "sysfs", "parent-is-a-file"])
def test_manifest_to_an_impossible_path(box: Sandbox, where: str) -> None:
    ref = _sample(box)
    target = _impossible(box)[where]
    before = baseline(box)
    run = run_slim(box, "manifest", ref, "--target", "ops", "-o", target)
    check(box, run, rc=3, error=r"^/\S*: ", before=before)


def test_build_to_procfs(box: Sandbox) -> None:
    ref = _sample(box)
    before = baseline(box)
    run = run_slim(box, "build", ref, "-o", "oci:/proc/slim-hostile", "--no-verify")
    check(box, run, rc=3, error=r"/proc/slim-hostile", before=before)


def test_build_to_a_missing_parent_is_refused(box: Sandbox) -> None:
    ref = _sample(box)
    target = box.root / "missing" / "img.tar"
    before = baseline(box)
    run = run_slim(box, "build", ref, "-o", f"docker-archive:{target}", "--no-verify")
    check(box, run, rc=3, error=r"missing", before=before)


def test_build_never_replaces_a_directory_that_is_not_a_slim_layout(box: Sandbox) -> None:
    ref = _sample(box)
    mine = box.out / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work\n")
    before = baseline(box)
    run = run_slim(box, "build", ref, "-o", f"oci:{mine}", "--no-verify")
    check(box, run, rc=3, error=r"not a previous slim", before=before)


def test_manifest_never_replaces_a_directory_that_is_not_a_manifest(box: Sandbox) -> None:
    ref = _sample(box)
    mine = box.out / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep\n")
    before = baseline(box)
    run = run_slim(box, "manifest", ref, "--target", "osv", "-o", str(mine))
    check(box, run, rc=3, error=r"not a previous slim", before=before)


def test_manifest_replaces_its_previous_output_whole(box: Sandbox) -> None:
    ref = _sample(box)
    dest = box.out / "manifest"
    for target in ("unikraft", "ops"):
        before = baseline(box, (dest,))
        run = run_slim(box, "manifest", ref, "--target", target, "-o", str(dest))
        check(box, run, rc=0, outputs=(dest,), before=before)
    assert (dest / "config.json").exists() and not (dest / "Kraftfile").exists()
    for link in (dest / "rootfs").rglob("*"):
        if link.is_symlink():
            assert not os.readlink(link).startswith("/"), link


def test_report_to_dev_null_writes_through(box: Sandbox) -> None:
    ref = _sample(box)
    before = baseline(box)
    run = run_slim(box, "analyze", ref, "-f", "json", "-o", "/dev/null")
    check(box, run, rc=0, before=before)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_report_to_stdout(box: Sandbox) -> None:
    ref = _sample(box)
    before = baseline(box)
    run = run_slim(box, "analyze", ref, "-f", "json", "-o", "-")
    check(box, run, rc=0, before=before)
    assert json.loads(run.stdout)["schema_version"]


def test_several_formats_into_a_directory_touch_only_their_own_files(box: Sandbox) -> None:
    ref = _sample(box)
    mine = box.out / "mine"
    mine.mkdir()
    (mine / "x").write_text("x")
    written = (mine / "report.json", mine / "report.html")
    before = baseline(box, written)
    run = run_slim(box, "analyze", ref, "-f", "json", "-f", "html", "-o", str(mine))
    check(box, run, rc=0, outputs=written, before=before)
    assert (mine / "x").read_text() == "x"


# -- caches ---------------------------------------------------------------------------------
def _elf_image(box: Sandbox) -> str:
    return _sample(box)


@pytest.mark.parametrize("kind", ["a-file", "unwritable", "garbage-entries"])
def test_cache_that_cannot_be_used_is_ignored(box: Sandbox, kind: str) -> None:
    ref = _elf_image(box)
    env_cache = box.cache
    if kind == "a-file":
        env_cache.rmdir()
        env_cache.write_text("not a directory")
    elif kind == "unwritable":
        env_cache.rmdir()
        os.symlink("/proc/self/fdinfo", env_cache)
    else:
        for sub in ("syscalls", "check"):
            (env_cache / sub).mkdir()
            for i in range(3):
                (env_cache / sub / f"{i:064x}.json").write_bytes(b"\x00garbage{[")
    report = box.out / "r.json"
    before = baseline(box, (report,))
    run = run_slim(box, "analyze", ref, "--syscalls", "-f", "json", "-o", str(report))
    check(box, run, rc=0, outputs=(report,), before=before)
    assert json.loads(report.read_text())["syscalls"]


@pytest.mark.parametrize("command", [("why", "/app/hello"), ("why", "/etc/none"), ("graph", "--format", "json")])
@pytest.mark.parametrize("damage", ["garbage", "other-shape"])
def test_a_damaged_why_or_graph_entry_is_analyzed_again(box: Sandbox, command: tuple[str, ...],
                                                       damage: str) -> None:
    """`slim why` and `slim graph` answer from what an earlier run stored (result_cache kinds
    why, graph). An entry that is not JSON, or is JSON of the right format whose index or graph
    has another shape, is no answer: the image is analyzed again, the answer is the same, the
    entry is written anew, and nothing else changes."""
    ref = _elf_image(box)
    verb, *rest = command
    kind = "why" if verb == "why" else "graph"
    first = run_slim(box, verb, ref, *rest)
    check(box, first, rc=first.rc)
    (entry,) = (box.cache / kind).glob("*.json")
    if damage == "garbage":
        entry.write_bytes(b"\x00garbage{[")
    else:
        doc = json.loads(entry.read_text())
        doc["data"]["extra"] = {"format": 2, "steps": {"/app/hello": ["/x", 1]}, "tried": [], "nodes": "x",
                                "edges": [["/a"]], "dirs": {}, "links": [], "others": None, "declined": 7}
        entry.write_text(json.dumps(doc))
    before = baseline(box)
    again = run_slim(box, verb, ref, *rest)
    check(box, again, rc=first.rc, before=before)
    assert again.stdout == first.stdout and again.stdout
    (rewritten,) = (box.cache / kind).glob("*.json")
    extra = json.loads(rewritten.read_text())["data"]["extra"]
    if kind == "why":
        assert isinstance(extra["steps"], dict) and "/app/hello" in extra["steps"]
    else:
        assert isinstance(extra["nodes"], list) and "/app/hello" in extra["nodes"]


def test_cache_entry_that_is_a_link_is_not_written_through(box: Sandbox) -> None:
    ref = _elf_image(box)
    report = box.out / "r.json"
    run = run_slim(box, "analyze", ref, "--syscalls", "-f", "json", "-o", str(report))
    check(box, run, rc=0)
    entries = list((box.cache / "syscalls").glob("*.json"))
    assert entries
    for entry in entries:
        entry.unlink()
        os.symlink(box.outside / "victim", entry)
    before = baseline(box, (report,))
    run = run_slim(box, "analyze", ref, "--syscalls", "-f", "json", "-o", str(report))
    check(box, run, rc=0, outputs=(report,), before=before)
    assert (box.outside / "victim").read_text() == "original\n"


def test_hostile_image_cannot_seed_the_cache_by_name(box: Sandbox) -> None:
    """A fake libc carrying the real one's name (and build-id) must not change what the real
    image's analysis reads: cache keys are content digests."""
    ref = _elf_image(box)
    report = box.out / "real.json"
    run = run_slim(box, "analyze", ref, "--syscalls", "-f", "json", "-o", str(report))
    check(box, run, rc=0)
    real = json.loads(report.read_text())["syscalls"]
    fake = forge.docker_archive(box.inputs / "fake.tar", [forge.tar(
        [*app_files(), T("lib", "d"), T("lib/x86_64-linux-gnu", "d"),
         T("lib/x86_64-linux-gnu/libc.so.6", data=bytes(forge.elf_header(e_type=3)))])], APP_CONFIG)
    run = run_slim(box, "analyze", str(fake), "--syscalls", "-f", "json", "-o", str(box.out / "fake.json"))
    check(box, run, rc=0)
    report.unlink()
    run = run_slim(box, "analyze", ref, "--syscalls", "-f", "json", "-o", str(report))
    check(box, run, rc=0)
    assert json.loads(report.read_text())["syscalls"] == real


