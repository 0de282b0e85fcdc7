"""The JSON report: valid against schema v1, stable bytes, contract fields present."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from slim.emitters import EMITTERS
from slim.emitters.report_json import load_schema, render_json
from slim.pipeline import load_image
from slim.result import KeptFile, UnknownItem, Verdict
from slim.summary import summarize
from tests.unit.test_summary import sample_image

TOP_LEVEL = {
    "schema_version", "image", "efficiency", "largest_dirs", "largest_files", "waste", "reachable",
    "removable", "keep", "packages", "syscalls", "probes", "unknowns", "verdicts", "build", "excess",
}


@pytest.fixture()
def report(tmp_path: Path):
    with load_image(sample_image(tmp_path)) as loaded:
        return summarize(loaded)


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(load_schema())


def test_real_report_validates_and_has_every_field(report) -> None:
    doc = json.loads(render_json(report))
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert set(doc) == TOP_LEVEL
    assert doc["schema_version"] == 1
    assert doc["image"]["size_bytes"] == report.image.size_bytes
    assert doc["efficiency"]["wasted_bytes"] == report.efficiency.wasted_bytes
    assert doc["reachable"] is None and doc["keep"] == [] and doc["syscalls"] == {"traced": [], "static": []}
    assert isinstance(doc["image"]["layers"][0]["size_bytes"], int)


def test_schema_rejects_drift(report) -> None:
    doc = json.loads(render_json(report))
    validator = jsonschema.Draft202012Validator(load_schema())
    bad = dict(doc, surprise=1)
    assert not validator.is_valid(bad)
    bad = json.loads(render_json(report))
    bad["image"]["size_bytes"] = 1.5  # bytes are integers
    assert not validator.is_valid(bad)
    bad = json.loads(render_json(report))
    del bad["waste"]
    assert not validator.is_valid(bad)


def test_output_is_deterministic_and_lists_sorted(tmp_path: Path) -> None:
    texts = []
    for name in ("a", "b"):
        with load_image(sample_image(tmp_path / name)) as loaded:
            result = summarize(loaded)
        # lists filled in arbitrary order still come out sorted
        result = dataclasses.replace(
            result, keep=[KeptFile("/z", 1, ("needed",)), KeptFile("/a", 2, ("entrypoint",))],
            unknowns=[UnknownItem("/y", "r"), UnknownItem("/b", "r")],
            verdicts=[Verdict("size", "pass", "1", "2"), Verdict("efficiency", "warn", "0.5", "0.9")],
            syscalls_static=["write", "read", "read"])
        texts.append(render_json(result).replace(str(tmp_path / name), "<dir>"))
    assert texts[0] == texts[1]
    doc = json.loads(texts[0])
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert [k["path"] for k in doc["keep"]] == ["/a", "/z"]
    assert [u["path"] for u in doc["unknowns"]] == ["/b", "/y"]
    assert [v["rule"] for v in doc["verdicts"]] == ["efficiency", "size"]
    assert doc["syscalls"]["static"] == ["read", "write"]
    sizes = [d["size_bytes"] for d in doc["largest_files"]]
    assert sizes == sorted(sizes, reverse=True)


def test_registry_has_json_and_text() -> None:
    assert {"json", "text"} <= set(EMITTERS)
    assert all(e.name == key for key, e in EMITTERS.items())
