"""slim fleet's pure parts: service names, the probe file, footprints and the reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slim.cli import app
from slim.emitters.report_fleet import render_fleet_html, render_fleet_json, render_fleet_markdown
from slim.emitters.unikernel import kernel_size, manifest_files
from slim.errors import UsageError
from slim.fleet import (
    FleetOutcome,
    LayerFacts,
    ServicePrep,
    ServiceSpec,
    read_probe_file,
    service_name,
    service_specs,
)
from slim.footprint import (
    Piece,
    ServiceLayout,
    StackLayer,
    image_footprint,
    measure,
    unikernel_footprint,
)


@pytest.mark.parametrize(("ref", "name"), [
    ("oci:/cache/images/lighttpd/oci", "lighttpd"),
    ("oci:/x/app.oci:v1", "app"),
    ("docker-archive:/tmp/web.docker.tar", "web"),
    ("docker://registry.local:5000/team/api:1.2", "api"),
    ("nginx:latest", "nginx"),
    ("oci:/tmp/<script>", "script"),
])
def test_service_names(ref: str, name: str) -> None:
    assert service_name(ref) == name


def test_service_specs_dedupe_and_probes(tmp_path: Path) -> None:
    probes = tmp_path / "probes.toml"
    probes.write_text('web = ["http:8080/"]\n"oci:/b/web" = ["cmd:--version"]\n')
    table = read_probe_file(str(probes))
    specs = service_specs(["oci:/a/web", "oci:/b/web"], table)
    assert [s.name for s in specs] == ["web", "web-2"]
    assert [s.probes[0].spec for s in specs] == ["http:8080", "cmd:--version"]
    assert [s.name for s in service_specs(["oci:/x/report.md"], {})] == ["svc-report.md"]
    with pytest.raises(UsageError, match="names no image"):
        service_specs(["oci:/a/api"], table)
    probes.write_text('web = "http:80"\n')
    with pytest.raises(UsageError, match="list of probe specs"):
        read_probe_file(str(probes))
    probes.write_text('web = ["bogus:1"]\n')
    with pytest.raises(UsageError, match="web"):
        read_probe_file(str(probes))


def test_measure_counts_each_piece_once() -> None:
    m = measure([Piece("base", 10, frozenset("a")), Piece("base", 10, frozenset("b")),
                 Piece("top-a", 3, frozenset("a")), Piece("top-b", 4, frozenset("b"))], ["a", "b"])
    assert (m.total, m.shared, m.unique, m.alone) == (17, 10, {"a": 3, "b": 4}, {"a": 13, "b": 14})


def test_page_cache_is_shared_only_through_a_shared_layer() -> None:
    base = StackLayer("c0", "d0", 100, 300)
    svc = [ServiceLayout(n, (base, StackLayer(f"c{n}", f"d{n}", 5, 20)), ((0, "/lib", 50), (1, "/app", 7)))
           for n in "ab"]
    f = image_footprint("shared", "shared", svc)
    assert (f.pulled.total, f.stored.total, f.page_cache.total) == (110, 340, 64)
    squashed = [ServiceLayout(n, (StackLayer(f"s{n}", f"s{n}", 60, 200),), ((0, "/lib", 50),)) for n in "ab"]
    assert image_footprint("squash", "squash", squashed).page_cache.total == 100
    u = unikernel_footprint("u", "u", 1000, {"a": 5, "b": 6}, {"a": 2, "b": 3})
    assert u.stored.total == u.page_cache.total == 2011 and u.pulled.total == 2005
    assert u.pulled.shared == 0


def test_kernel_sizes_have_sources() -> None:
    for target in ("ops", "osv", "unikraft"):
        k = kernel_size(target)
        assert k.bytes > 0 and k.source
    assert manifest_files("osv", ["/lib/libc.so.6", "/app"]) == ["/app"]


def _outcome() -> FleetOutcome:
    stack = (LayerFacts("d", "c", "b", 10, 20),)
    services = tuple(ServicePrep(ServiceSpec(n, f"oci:/x/{n}"), verified=True) for n in ("web", "<b>"))
    return FleetOutcome(services, (), {"given": {s.name: stack for s in services}},
                        {"given": {s.name: ((0, "/f", 5),) for s in services}}, 1, 5,
                        {"web": 0, "<b>": 5}, workers=2)


def test_reports_escape_and_parse() -> None:
    outcome = _outcome()
    feet = [image_footprint("given", "as given", [
        ServiceLayout(n, (StackLayer("c", "b", 10, 20),), ((0, "/f", 5),)) for n in ("web", "<b>")])]
    md = render_fleet_markdown(outcome, feet)
    assert "| as given | 1 | 10 B | 20 B | 5 B | 1.00x |" in md
    page = render_fleet_html(outcome, feet)
    assert "<b>" not in page.replace("<body>", "") and "&lt;b&gt;" in page and "<svg" in page
    doc = json.loads(render_fleet_json(outcome, feet))
    assert doc["footprints"][0]["pulled"]["total"] == 10 and doc["base"]["unused"]["<b>"] == 5


def test_cli_fleet_usage_errors(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["fleet", "oci:/nope", "-o", str(tmp_path / "o"), "--layers", "bogus"])
    assert res.exit_code == 2 and "--layers bogus" in res.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["fleet", "oci:/nope", "-o", str(tmp_path / "full")])
    assert res.exit_code == 3 and "refusing to replace" in res.output
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
