"""SBOM documents (slim.emitters.sbom): valid against the CycloneDX 1.6 schema (shipped with
cyclonedx-python-lib) and the SPDX 2.3 schema (vendored: tests/schemas/README.md), deterministic,
and listing what the described image has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from slim.emitters.sbom import SBOM_FORMATS, SbomSubject, render_sbom
from slim.errors import EmitError
from slim.result import PackageSummary

SPDX_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "spdx-2.3.schema.json"

PACKAGES = [
    PackageSummary("libc6", "2.36-9+deb12u4", "dpkg", 12_000_000, 2_000_000, False, 286, 7,
                   "partly-kept", "amd64", "glibc",
                   "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"),
    PackageSummary("lighttpd", "1.4.69-1", "dpkg", 500_000, 500_000, False, 67, 67, "kept", "amd64", "",
                   "pkg:deb/debian/lighttpd@1.4.69-1?arch=amd64&distro=debian-12"),
    PackageSummary("bash", "5.2.15-2+b2", "dpkg", 7_000_000, 0, True, 70, 0, "removed", "amd64", "",
                   "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12"),
    PackageSummary("Flask", "3.0.0", "python", 300_000, 20_000, False, 40, 5, "partly-kept", "", "",
                   "pkg:pypi/flask@3.0.0"),
    # the same distribution in a second virtualenv, and a jar without a Maven groupId
    PackageSummary("Flask", "3.0.0", "python", 300_000, 300_000, False, 40, 40, "kept", "", "",
                   "pkg:pypi/flask@3.0.0"),
    PackageSummary("app", "1.0", "jar", 1000, 1000, False, 1, 1, "kept"),
]
SUBJECT = SbomSubject("docker-archive:app.tar", "sha256:" + "ab" * 32, "amd64", "linux",
                      "2024-05-01T12:00:00.123456789Z", minimal=True)


def cyclonedx_errors(text: str) -> object:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)


def spdx_errors(doc: dict) -> list[str]:
    schema = json.loads(SPDX_SCHEMA.read_text())
    return [f"{list(e.path)}: {e.message}" for e in Draft7Validator(schema).iter_errors(doc)]


@pytest.mark.parametrize("minimal", [True, False])
def test_cyclonedx_validates(minimal: bool) -> None:
    subject = SbomSubject(**{**SUBJECT.__dict__, "minimal": minimal})
    text = render_sbom("cyclonedx", PACKAGES, subject).decode()
    assert cyclonedx_errors(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6" and doc["metadata"]["component"]["type"] == "container"
    assert doc["metadata"]["timestamp"].startswith("2024-05-01T12:00:00")
    names = sorted(c["name"] for c in doc["components"])
    # a minimal image lists only what it keeps; an analyzed image everything it has
    assert names == (["Flask", "Flask", "app", "libc6", "lighttpd"] if minimal
                     else ["Flask", "Flask", "app", "bash", "libc6", "lighttpd"])
    refs = [c["bom-ref"] for c in doc["components"]]
    assert len(refs) == len(set(refs))
    libc = next(c for c in doc["components"] if c["name"] == "libc6")
    props = {p["name"]: p["value"] for p in libc["properties"]}
    assert props["slim:status"] == "partly-kept"
    assert (props["slim:kept-files"], props["slim:removed-files"]) == ("7", "279")
    assert (props["slim:kept-bytes"], props["slim:removed-bytes"]) == ("2000000", "10000000")
    assert libc["purl"].startswith("pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64")


@pytest.mark.parametrize("minimal", [True, False])
def test_spdx_validates(minimal: bool) -> None:
    subject = SbomSubject(**{**SUBJECT.__dict__, "minimal": minimal})
    doc = json.loads(render_sbom("spdx", PACKAGES, subject))
    assert spdx_errors(doc) == []
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["creationInfo"]["created"] == "2024-05-01T12:00:00Z"
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(ids) == len(set(ids))
    contains = [r for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"]
    assert len(contains) == len(doc["packages"]) - 1
    libc = next(p for p in doc["packages"] if p["name"] == "libc6")
    assert libc["externalRefs"][0]["referenceType"] == "purl"
    assert "status=partly-kept" in libc["annotations"][0]["comment"]
    assert "removed-bytes=10000000" in libc["annotations"][0]["comment"]
    assert ("bash" in {p["name"] for p in doc["packages"]}) is not minimal


@pytest.mark.parametrize("fmt", sorted(SBOM_FORMATS))
def test_deterministic_and_content_addressed(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    one = render_sbom(fmt, PACKAGES, SUBJECT)
    assert one == render_sbom(fmt, list(reversed(PACKAGES)), SUBJECT)
    other = render_sbom(fmt, PACKAGES[:2], SUBJECT)
    key = "serialNumber" if fmt == "cyclonedx" else "documentNamespace"
    assert json.loads(one)[key] != json.loads(other)[key]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert b"1970-01-01T00:00:00" in render_sbom(fmt, PACKAGES, SUBJECT)


def test_unknown_format() -> None:
    with pytest.raises(EmitError, match="--sbom swid: unknown SBOM format"):
        render_sbom("swid", PACKAGES, SUBJECT)


def test_schema_is_the_spdx_2_3_one() -> None:
    schema = json.loads(SPDX_SCHEMA.read_text())
    assert schema["$id"] == "http://spdx.org/rdf/terms/2.3" and schema["title"] == "SPDX 2.3"
