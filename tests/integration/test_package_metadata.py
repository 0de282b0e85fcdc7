"""Issue 19 on a real Debian image (the bench's lighttpd: debootstrap minbase + lighttpd): the
minimal image's trimmed dpkg database is what dpkg itself accepts (`dpkg-query -W`, `--verify`
checks every kept file against its md5sum, `--audit`), lists exactly the packages that keep a
file, the SBOM referrer validates, and `slim diff` never calls a package with files "removed"."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from slim.diff import diff_images
from slim.emitters.image import build_image
from slim.pipeline import AnalyzeOptions, analyze, load_image
from tests.conftest import require

pytestmark = pytest.mark.slow


def _extract(layout: Path, dest: Path) -> tuple[dict, list[dict]]:
    index = json.loads((layout / "index.json").read_text())

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_bytes())
    dest.mkdir()
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"])) as tf:
            tf.extractall(dest, filter="tar")
    artifacts = [json.loads(blob(m["digest"]).read_bytes()) for m in index["manifests"][1:]]
    return manifest, [{**a, "document": blob(a["layers"][0]["digest"]).read_bytes()} for a in artifacts]


def test_trimmed_database_on_real_debian(lighttpd_archive: str, tmp_path: Path) -> None:
    require(shutil.which("dpkg") is not None and shutil.which("dpkg-query") is not None, "dpkg is not installed")
    source = f"docker-archive:{lighttpd_archive}"
    layout = tmp_path / "slim.oci"
    with load_image(source) as loaded:
        analysis = analyze(loaded, AnalyzeOptions())
        assert analysis.closure is not None
        built = build_image(loaded, analysis.closure.keep, f"oci:{layout}", sbom="cyclonedx")
        before = {p.name for p in analysis.result.packages if p.manager == "dpkg"}
    root = tmp_path / "root"
    _, artifacts = _extract(layout, root)
    kept = sorted(p.name for p in built.packages if p.manager == "dpkg" and p.status != "removed")
    assert "lighttpd" in kept and "libc6" in kept and len(kept) < len(before)
    # dpkg-query lists exactly the packages that keep a file
    listed = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\n", f"--admindir={root}/var/lib/dpkg"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert sorted(listed) == kept
    # dpkg checks every listed file against its md5sum, and finds the database consistent
    for args in (["--verify"], ["--audit"]):
        proc = subprocess.run(["dpkg", f"--root={root}", *args], capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and proc.stdout == "", (args, proc.stdout, proc.stderr)
    # the SBOM attached as a referrer validates and names the kept packages
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    (artifact,) = artifacts
    assert artifact["artifactType"] == "application/vnd.cyclonedx+json"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(artifact["document"].decode()) is None
    components = {c["name"] for c in json.loads(artifact["document"])["components"]}
    assert set(kept) <= components
    # slim diff: a package that keeps files is partly kept, never removed
    d = diff_images(source, f"oci:{layout}")
    status = {p.name: p for p in d.packages if p.manager == "dpkg"}
    assert status["libc6"].status == "partly-kept"
    assert {n for n, p in status.items() if p.status == "removed"} == before - set(kept)
    assert all(p.head_files == 0 for p in d.packages if p.status == "removed")
