"""`slim analyze --sbom` and `slim build --sbom` on the committed hello-glibc sample (a dpkg
database of libc6, zlib1g and two packages the app does not use)."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft7Validator
from typer.testing import CliRunner

from slim.cli import app

SAMPLES = Path(__file__).resolve().parents[1].parent / "sample_images"
GLIBC = f"oci:{SAMPLES / 'hello-glibc' / 'hello-glibc.oci'}"
SPDX_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "spdx-2.3.schema.json"
cli = CliRunner()


def test_analyze_sbom_to_stdout_replaces_the_report() -> None:
    res = cli.invoke(app, ["analyze", GLIBC, "--sbom", "spdx"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert list(Draft7Validator(json.loads(SPDX_SCHEMA.read_text())).iter_errors(doc)) == []
    names = {p["name"] for p in doc["packages"]}
    # the analyzed image: every package it has, the unused ones too
    assert {"libc6", "zlib1g", "docs-only"} <= names


def test_analyze_sbom_beside_the_report(tmp_path: Path) -> None:
    res = cli.invoke(app, ["analyze", GLIBC, "--sbom", "cyclonedx", "--sbom-output", str(tmp_path / "s.json"),
                           "-f", "json", "-o", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    bom = json.loads((tmp_path / "s.json").read_text())
    report = json.loads((tmp_path / "r.json").read_text())
    libc = next(p for p in report["packages"] if p["name"] == "libc6")
    assert libc["status"] == "partly-kept" and 0 < libc["kept_files"] < libc["file_count"]
    component = next(c for c in bom["components"] if c["name"] == "libc6")
    assert component["purl"] == libc["purl"]
    assert {"name": "slim:kept-files", "value": str(libc["kept_files"])} in component["properties"]


def test_analyze_sbom_usage_errors() -> None:
    res = cli.invoke(app, ["analyze", GLIBC, "--sbom", "cyclonedx", "--format", "json"])
    assert res.exit_code == 2 and "cannot both go to standard output" in res.output
    res = cli.invoke(app, ["analyze", GLIBC, "--sbom", "swid"])
    assert res.exit_code == 2 and "--sbom swid" in res.output


def test_build_sbom_beside_a_docker_archive(tmp_path: Path) -> None:
    archive = tmp_path / "slim.tar"
    res = cli.invoke(app, ["build", GLIBC, "--output", f"docker-archive:{archive}", "--no-verify",
                           "--sbom", "spdx", "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    beside = Path(f"{archive}.spdx.json")
    doc = json.loads(beside.read_text())
    image, *packages = doc["packages"]
    assert image["primaryPackagePurpose"] == "CONTAINER"
    assert {p["name"] for p in packages} == {"libc6", "zlib1g"}  # the minimal image's packages
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["build"]["sbom"] == {"format": "spdx", "media_type": "application/spdx+json",
                                       "path": str(beside)}
    statuses = {p["name"]: p["status"] for p in report["packages"]}
    assert statuses["libc6"] == "partly-kept" and statuses["docs-only"] == "removed"
    res = cli.invoke(app, ["build", GLIBC, "--output", "docker://127.0.0.1:1/x", "--sbom", "spdx"])
    assert res.exit_code == 2 and "--sbom" in res.output
