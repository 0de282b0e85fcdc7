"""End-to-end CLI behaviour on the committed sample images (no Docker, no tracing)."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from slim.cli import app
from slim.pipeline import load_image

HERE = os.path.dirname(__file__)
SAMPLES = os.path.join(HERE, "..", "..", "sample_images")
GLIBC = "docker-archive:" + os.path.join(SAMPLES, "hello-glibc", "hello-glibc.docker.tar")
MUSL = "oci:" + os.path.join(SAMPLES, "hello-musl", "hello-musl.oci")
SHELL = "docker-archive:" + os.path.join(SAMPLES, "shell-entrypoint", "shell-entrypoint.docker.tar")

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_why_prints_the_chain_and_exits_1_when_not_kept():
    r = invoke("why", GLIBC, "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13")
    assert r.exit_code == 0, r.output
    assert "container start -> /app/hello" in r.output and "[needed]" in r.output
    r = invoke("why", GLIBC, "/usr/include/zlib.h")
    assert r.exit_code == 1 and "not kept" in r.output
    r = invoke("why", GLIBC, "/no/such/file")
    assert r.exit_code == 1 and "not in the image" in r.output


def test_why_through_a_directory_link_and_verbose_resolver_dirs():
    r = invoke("why", "-v", GLIBC, "/lib/x86_64-linux-gnu/libz.so.1")
    assert r.exit_code == 0, r.output
    assert "libz.so.1" in r.output and "tried" in r.output


def test_analyze_json_has_keep_with_reasons_and_removable():
    r = invoke("analyze", GLIBC, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    keep = {k["path"]: k for k in doc["keep"]}
    assert "needed" in keep["/usr/lib/x86_64-linux-gnu/libc.so.6"]["reasons"]
    assert "/usr/include/zlib.h" not in keep
    assert doc["reachable"]["size_bytes"] + doc["removable"]["size_bytes"] == doc["image"]["size_bytes"]
    unused = {p["name"] for p in doc["packages"] if p["unused"]}
    assert unused == {"docs-only", "zlib1g-dev"}


def test_analyze_strict_fails_on_unknowns_and_probe_needs_trace(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app").write_text("#!/bin/sh\n$CMD --go\n")
    (root / "bin" / "app").chmod(0o755)
    (root / ".slim-config.json").write_text(json.dumps({"config": {"Entrypoint": ["/bin/app"]}}))
    r = invoke("analyze", f"rootfs:{root}", "--strict", "-f", "json")
    assert r.exit_code == 1
    r = invoke("analyze", GLIBC, "--probe", "http:80")
    assert r.exit_code == 2 and "--probe needs --trace" in r.output


def test_graph_exports(tmp_path):
    out = tmp_path / "g.json"
    r = invoke("graph", SHELL, "--format", "json", "--output", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert {"src": "/app/start.sh", "dst": "/app/lib.sh"} in [{"src": e["src"], "dst": e["dst"]} for e in doc["edges"]]
    r = invoke("graph", SHELL, "--format", "png")
    assert r.exit_code == 2


def test_build_without_verification_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r1 = invoke("build", GLIBC, "--output", f"oci:{a}", "--no-verify", "--report", str(tmp_path / "r.json"))
    r2 = invoke("build", GLIBC, "--output", f"docker-archive:{b}.tar", "--no-verify")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    digest1 = r1.output.strip().splitlines()[-1].split()[1]
    digest2 = r2.output.strip().splitlines()[-1].split()[1]
    assert digest1 == digest2 and digest1.startswith("sha256:")
    with load_image(f"oci:{a}") as li:
        paths = {e.path for e in li.rootfs.walk()}
        assert "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13" in paths and "/usr/include/zlib.h" not in paths
        assert li.rootfs.resolve("/lib64/ld-linux-x86-64.so.2").exists
        assert li.image.config.entrypoint == ("/app/hello",)
        assert dict(li.image.config.labels)["org.slim.source-digest"].startswith("sha256:")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["build"]["digest"] == digest1 and report["build"]["verified"] is None


def test_build_rejects_an_unknown_output_kind(tmp_path):
    r = invoke("build", GLIBC, "--output", f"dir:{tmp_path}/x", "--no-verify")
    assert r.exit_code == 2 and "must be oci:DIR" in r.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("image", [MUSL])
def test_seccomp_profile_from_static_syscalls(tmp_path, image):
    out = tmp_path / "seccomp.json"
    r = invoke("seccomp", image, "--output", str(out))
    assert r.exit_code == 0, r.output
    profile = json.loads(out.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    names = set(profile["syscalls"][0]["names"])
    assert {"write", "exit_group"} <= names
    r = invoke("seccomp", image, "--output", str(out), "--from", "traced")
    assert r.exit_code == 2


def test_seccomp_of_an_unchanged_image_is_the_cached_analysis(tmp_path, monkeypatch):
    """A static profile needs only the analysis result: the second `slim seccomp` (and one
    after `slim analyze --syscalls`, the same analysis) reads it from the result cache and
    writes the same profile without reading the image's layers."""
    import slim.pipeline

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    r = invoke("seccomp", GLIBC, "--output", str(first))
    assert r.exit_code == 0, r.output

    def no_read(*_args, **_kwargs):
        raise AssertionError("a cached analysis must not read the image")

    monkeypatch.setattr(slim.pipeline, "load_image", no_read)
    r = invoke("seccomp", GLIBC, "--output", str(second))
    assert r.exit_code == 0, r.output
    assert second.read_bytes() == first.read_bytes()
    r = invoke("analyze", GLIBC, "--syscalls", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "write" in json.loads(r.output)["syscalls"]["static"]


def test_why_of_an_unchanged_image_is_answered_from_the_cache(tmp_path, monkeypatch):
    """The first `slim why` stores with the analysis everything `why` reads of it (every kept
    path's chain, the loader's tried directories, the declined edges, the image's paths);
    any question about the unchanged image is then answered as the analysis answers it —
    kept, not kept, not in the image, spelled through a link, with -v — without reading it."""
    import slim.pipeline

    questions = [("-v", "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"), ("/app/hello",),
                 ("/usr/include/zlib.h",), ("/no/such/file",), ("-v", "/lib/x86_64-linux-gnu/libz.so.1"),
                 ("/lib",), ("/usr/lib/../lib/x86_64-linux-gnu/libc.so.6",)]
    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    expected = {q: invoke("why", *q[:-1], GLIBC, q[-1]) for q in questions}
    assert {r.exit_code for r in expected.values()} == {0, 1}
    assert "not in the image" in expected[("/no/such/file",)].output
    monkeypatch.delenv("SLIM_NO_CACHE")
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    assert invoke("why", GLIBC, "/app/hello").exit_code == 0
    assert list((tmp_path / "cache" / "why").glob("*.json"))

    def no_read(*_args, **_kwargs):
        raise AssertionError("a cached answer must not read the image")

    monkeypatch.setattr(slim.pipeline, "load_image", no_read)
    for q in questions:
        got = invoke("why", *q[:-1], GLIBC, q[-1])
        assert (got.exit_code, got.output) == (expected[q].exit_code, expected[q].output), q


def test_why_after_analyze_reads_what_the_analysis_stored(tmp_path, monkeypatch):
    """`slim analyze` then `slim why` (the usual order): the analysis stores what `why`
    reads, so the first question does not analyze the image again."""
    import slim.pipeline

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    expected = invoke("why", "-v", GLIBC, "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13")
    for kind in ("why", "analyze"):
        for entry in (tmp_path / "cache" / kind).glob("*.json"):
            entry.unlink()
    assert invoke("analyze", GLIBC, "--format", "json").exit_code == 0
    real_load = slim.pipeline.load_image
    loads = []

    def counted(*args, **kwargs):
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(slim.pipeline, "load_image", counted)
    got = invoke("why", "-v", GLIBC, "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13")
    assert (got.exit_code, got.output) == (expected.exit_code, expected.output) and loads == []


def test_an_image_with_too_many_paths_gets_no_why_entry(tmp_path, monkeypatch):
    """Past MAX_WHY_PATHS the index (every path of the image) is not written: `why` then
    analyzes each time, and answers as before."""
    import slim.pipeline

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(slim.pipeline, "MAX_WHY_PATHS", 3)
    assert invoke("analyze", GLIBC, "--format", "json").exit_code == 0
    first = invoke("why", GLIBC, "/app/hello")
    again = invoke("why", GLIBC, "/app/hello")
    assert first.exit_code == 0 and again.output == first.output
    assert list((tmp_path / "cache" / "analyze").glob("*.json"))
    assert not list((tmp_path / "cache" / "why").glob("*.json"))


def test_the_html_report_of_an_unchanged_image_is_written_from_the_cache(tmp_path, monkeypatch):
    """The HTML report's dependency chains come from the same cached index as `slim why`:
    the second report is the first, byte for byte, without reading the image, and a `slim
    why` after it reads the entry the report stored."""
    import slim.pipeline

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    r = invoke("analyze", GLIBC, "--format", "html", "--output", str(first))
    assert r.exit_code == 0, r.output
    assert "<ol class=chain>" in first.read_text()

    def no_read(*_args, **_kwargs):
        raise AssertionError("a cached report must not read the image")

    monkeypatch.setattr(slim.pipeline, "load_image", no_read)
    r = invoke("analyze", GLIBC, "--format", "html", "--output", str(second))
    assert r.exit_code == 0, r.output
    assert second.read_bytes() == first.read_bytes()
    r = invoke("why", GLIBC, "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13")
    assert r.exit_code == 0 and "[needed]" in r.output


def test_the_graph_of_an_unchanged_image_is_exported_from_the_cache(tmp_path, monkeypatch):
    """`slim graph` keeps the graph with the analysis: exploring the unchanged image again
    (another --from/--to, another format) reads it, and exports what the analysis exports."""
    import slim.pipeline

    questions = [("--format", "json"), ("--to", "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"),
                 ("--format", "graphml", "--from", "/app/hello", "--depth", "1")]
    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    expected = {q: invoke("graph", GLIBC, *q) for q in questions}
    monkeypatch.delenv("SLIM_NO_CACHE")
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    assert invoke("graph", GLIBC).exit_code == 0

    def no_read(*_args, **_kwargs):
        raise AssertionError("a cached graph must not read the image")

    monkeypatch.setattr(slim.pipeline, "load_image", no_read)
    for q in questions:
        got = invoke("graph", GLIBC, *q)
        assert got.exit_code == 0 and got.output == expected[q].output, q
    missing = invoke("graph", GLIBC, "--to", "/no/such")
    assert missing.exit_code == 2 and "not in the dependency graph" in missing.output


def test_a_graph_of_too_many_nodes_is_not_cached(tmp_path, monkeypatch):
    import slim.cli

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(slim.cli, "MAX_CACHED_GRAPH", 3)
    first = invoke("graph", GLIBC, "--format", "json")
    assert first.exit_code == 0 and invoke("graph", GLIBC, "--format", "json").output == first.output
    assert not list((tmp_path / "cache" / "graph").glob("*.json"))


def test_a_why_index_of_another_shape_is_analyzed_again():
    from slim.pipeline import why_chains, why_from_index

    def index(**change):
        doc = {"format": 2, "tried": {}, "declined": {}, "dirs": [], "links": {}, "others": ["/a"],
               "steps": {"/a": ["<root>", "entrypoint", "argv[0] /a"]}}
        return {**doc, **change}

    assert [s.step.dst for s in why_from_index(index(), "/a").steps] == ["/a"]
    assert [s.dst for s in why_chains(index())("/a")] == ["/a"] and why_chains(index())("/b") is None
    assert why_chains(index(format=1)) is None and why_chains(index(steps=[])) is None
    assert why_chains(index(steps={"/a": ["/b", "needed", "x"], "/b": ["/a", "needed", "y"]}))("/a") is None
    answer = why_from_index(index(declined={"/b": [["/a", "never runs"]]}, others=["/a", "/b"]), "/b")
    assert answer.steps == () and answer.in_image and answer.declined == (("/a", "never runs"),)
    for bad in (None, [], index(format=1), index(steps=[]), index(dirs={}), index(others=[1]),
                index(links={"/l": 3}), index(steps={"/a": ["/b", "needed", "x"], "/b": ["/a", "needed", "y"]}),
                index(steps={"/a": ["/b", "needed"]}), index(steps={"/a": ["/b", 1, "x"]}),
                index(declined={"/b": [["/a"]]}, others=["/a", "/b"]),
                index(tried={"<root>\0libz.so.1": 7},
                      steps={"/a": ["<root>", "needed", "DT_NEEDED libz.so.1 via RUNPATH"]})):
        path = "/b" if isinstance(bad, dict) and bad.get("declined") else "/a"
        assert why_from_index(bad, path) is None, bad


def test_manifest_ops_lays_out_kept_files(tmp_path):
    r = invoke("manifest", MUSL, "--target", "ops", "--output", str(tmp_path / "ops"))
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "ops" / "config.json").read_text())
    assert config and "verdict on nanos: " in r.output
    assert any((tmp_path / "ops").rglob("hello"))
    assert "next:\n  ops run /app/hello -c " in r.output


def test_manifest_layout_with_a_trace_and_explain(tmp_path):
    """With a trace (here a saved one) the root path and the program's own start are no
    problem: issue 20's `/: would be written outside …/rootfs` and "runs other programs"."""
    from slim.tracers.trace import Trace

    trace = Trace(syscalls={"execve": 1, "write": 1, "exit_group": 1},
                  programs={"/app/hello": {"write": 1, "exit_group": 1}})
    trace.access("/").stated = True
    trace.access("/app/hello").executed = True
    saved = tmp_path / "t.json"
    saved.write_text(trace.dumps())
    out = tmp_path / "uk"
    r = invoke("manifest", MUSL, "--target", "unikraft", "-o", str(out), "--trace-file",
               str(saved), "--explain")
    assert r.exit_code == 0, r.output
    assert "syscalls (traced, after the app started): 2" in r.output
    assert "execve" not in r.output.split("next:")[0]
    marker = json.loads((out / "slim-manifest.json").read_text())
    assert marker["next"] == [f"kraft run --rm --plat qemu --arch x86_64 {out}"]
    assert (out / "run.sh").read_text().endswith(f"kraft run --rm --plat qemu --arch x86_64 {out}\n")
    assert (out / "rootfs/app/hello").exists()


@pytest.mark.parametrize("command", ["analyze", "build", "why", "graph", "seccomp", "manifest",
                                     "diff", "check", "hook install"])
def test_every_help_renders(command):
    r = invoke(*command.split(), "--help")
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output


def test_keep_and_drop_globs():
    r = invoke("analyze", GLIBC, "-f", "json", "--keep", "/usr/share/doc", "--drop", "**/libz.so*")
    assert r.exit_code == 0, r.output
    keep = {k["path"]: k["reasons"] for k in json.loads(r.output)["keep"]}
    assert keep["/usr/share/doc/libc6/copyright"] == ["rule"]  # a directory keeps its subtree
    assert not any("libz.so" in p for p in keep)
    assert "/usr/lib/x86_64-linux-gnu/libc.so.6" in keep


def test_graph_focus_and_evidence():
    whole = invoke("graph", MUSL)
    assert whole.exit_code == 0, whole.output
    r = invoke("graph", MUSL, "--to", "/app/hello", "--depth", "1")
    assert r.exit_code == 0, r.output
    assert r.output.count("->") == 1 and '"<root>" -> "/app/hello"' in r.output
    assert "tooltip=" in r.output  # the edge's evidence
    assert len(r.output) < len(whole.output)
    r = invoke("graph", MUSL, "--from", "/nope")
    assert r.exit_code == 2 and "/nope: not in the dependency graph" in r.output


def test_the_fast_exit_keeps_what_threads_and_exit_handlers_print(tmp_path) -> None:
    """`slim` ends with os._exit after joining threads and running the atexit handlers; what
    they write still reaches a redirected stdout, and the exit code is kept."""
    import os
    import subprocess
    import sys

    code = ("import atexit, threading, time\n"
            "from slim.cli import _exit_now\n"
            "print('command')\n"
            "def late():\n    time.sleep(0.2); print('thread')\n"
            "threading.Thread(target=late).start()\n"
            "atexit.register(lambda: print('atexit'))\n"
            "_exit_now(3)\n")
    out = tmp_path / "out.txt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open(out, "w") as f:
        rc = subprocess.run([sys.executable, "-c", code], stdout=f, env=env, timeout=60).returncode
    assert rc == 3
    assert out.read_text().split() == ["command", "thread", "atexit"]


def test_why_says_which_edge_the_analysis_declined_and_why(tmp_path):
    from tests.imagekit import write_tree
    from tests.unit.analyzers.test_python import PY_CONFIG, PY_FILES, PY_LINKS, STD

    files = dict(PY_FILES)
    files[f"{STD}/pydoc.py"] = ("class Helper:\n    def _gettopic(self):\n        try:\n"
                                "            import pydoc_data.topics\n        except ImportError:\n"
                                "            return ''\n")
    files[f"{STD}/pydoc_data/__init__.py"] = ""
    files[f"{STD}/pydoc_data/topics.py"] = "topics = {}\n"
    files["/app/app.py"] = "import pydoc\n"
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    r = invoke("why", f"rootfs:{tmp_path}", f"{STD}/pydoc_data/topics.py")
    assert r.exit_code == 1 and "not kept" in r.output
    assert f"{STD}/pydoc.py would keep it, but: {STD}/pydoc.py:4: import pydoc_data.topics: only help" in r.output
