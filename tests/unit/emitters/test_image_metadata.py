"""The minimal image's package metadata (slim.emitters.image): the rewritten dpkg database read
back by the real `dpkg-query --admindir`, the trimmed RECORD, the label, and the SBOM attached as
an OCI 1.1 referrer that slim's own reader and skopeo still see past."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from slim.emitters.image import LABEL_PACKAGE_DB, build_image
from slim.emitters.sbom import CYCLONEDX_MEDIA_TYPE
from slim.image import LoadedImage
from slim.pipeline import load_image
from tests.conftest import require
from tests.unit.analyzers.test_package_report import make_root

SITE = "/app/venv/lib/python3.11/site-packages"
KEEP = {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib", "/usr/sbin/nginx", "/etc/nginx/nginx.conf",
        f"{SITE}/flask/__init__.py"}


@pytest.fixture
def img(tmp_path: Path, opened: list[LoadedImage]) -> LoadedImage:
    loaded = load_image(f"rootfs:{make_root(tmp_path / 'root')}")
    opened.append(loaded)
    return loaded


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def extract(layout: Path, dest: Path) -> dict:
    """Unpack the image manifest's layers into `dest`; returns the manifest."""
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(layout, index["manifests"][0]["digest"]))
    dest.mkdir()
    for layer in manifest["layers"]:
        path = layout / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]
        with tarfile.open(path) as tf:
            tf.extractall(dest, filter="tar")
    return manifest


def test_dpkg_query_reads_the_trimmed_database(img: LoadedImage, tmp_path: Path) -> None:
    require(shutil.which("dpkg-query") is not None, "dpkg-query is not installed")
    built = build_image(img, KEEP, f"oci:{tmp_path / 'out'}")
    root = tmp_path / "x"
    manifest = extract(tmp_path / "out", root)
    admindir = root / "var/lib/dpkg"
    proc = subprocess.run(["dpkg-query", "-W", f"--admindir={admindir}", "-f",
                           "${Package}\t${Version}\t${X-Slim-Trimmed}\n"],
                          capture_output=True, text=True, check=True)
    rows = [ln.split("\t") for ln in proc.stdout.splitlines()]
    # exactly the packages that keep a file; docs keeps none and is gone
    assert [r[0] for r in rows] == ["libc6", "nginx"]
    kept = {p.name for p in built.packages if p.manager == "dpkg" and p.status in ("kept", "partly-kept")}
    assert kept == {"libc6", "nginx"}
    assert rows[1][2] == "kept-files=2 removed-files=1 kept-bytes=210 removed-bytes=9"
    listed = subprocess.run(["dpkg-query", f"--admindir={admindir}", "-L", "nginx"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert "/usr/sbin/nginx" in listed and "/etc/nginx/mime.types" not in listed
    for path in listed:  # every listed path is in the minimal image
        assert (root / path.lstrip("/")).exists() or (root / path.lstrip("/")).is_symlink(), path
    assert not (admindir / "info/docs.list").exists()
    assert (admindir / "info/format").read_text() == "1\n"  # "pkg:arch.list" names need it
    assert not (admindir / "info/nginx.postinst").exists()
    # scanners find the distribution and the kept Python distribution's metadata
    assert (root / "usr/lib/os-release").is_file() and (root / "etc/os-release").is_symlink()
    record = (root / SITE.lstrip("/") / "Flask-3.0.0.dist-info/RECORD").read_text()
    assert "flask/cli.py" not in record and "flask/__init__.py" in record
    assert (root / SITE.lstrip("/") / "Flask-3.0.0.dist-info/METADATA").is_file()
    config = json.loads(blob(tmp_path / "out", manifest["config"]["digest"]))
    assert config["config"]["Labels"][LABEL_PACKAGE_DB] == "trimmed"
    # the report counts the rewritten files at their new size
    assert built.size_bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_sbom_referrer(img: LoadedImage, tmp_path: Path) -> None:
    layout = tmp_path / "out"
    built = build_image(img, KEEP, f"oci:{layout}", sbom="cyclonedx")
    index = json.loads((layout / "index.json").read_text())
    image_entry, artifact_entry = index["manifests"]
    assert artifact_entry["artifactType"] == CYCLONEDX_MEDIA_TYPE
    artifact = json.loads(blob(layout, artifact_entry["digest"]))
    assert artifact["subject"] == {k: image_entry[k] for k in ("mediaType", "digest", "size")}
    assert artifact["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert blob(layout, artifact["config"]["digest"]) == b"{}"
    assert artifact["layers"][0]["mediaType"] == CYCLONEDX_MEDIA_TYPE
    document = blob(layout, artifact["layers"][0]["digest"])
    assert document == built.sbom
    names = {c["name"] for c in json.loads(document)["components"]}
    assert {"libc6", "nginx", "Flask"} <= names and "docs" not in names
    # the layout still opens as the image, by tag or without one
    for ref in (f"oci:{layout}", f"oci:{layout}:latest"):
        with load_image(ref) as again:
            assert again.image.digest == built.digest
    if shutil.which("skopeo"):
        out = subprocess.run(["skopeo", "inspect", "--config", f"oci:{layout}:latest"],
                             capture_output=True, text=True, check=True).stdout
        assert json.loads(out)["config"]["Labels"][LABEL_PACKAGE_DB] == "trimmed"


def test_docker_archive_returns_the_sbom_without_a_referrer(img: LoadedImage, tmp_path: Path) -> None:
    built = build_image(img, KEEP, f"docker-archive:{tmp_path / 'a.tar'}", sbom="spdx")
    assert json.loads(built.sbom)["spdxVersion"] == "SPDX-2.3" and built.sbom_format == "spdx"
    with tarfile.open(tmp_path / "a.tar") as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    assert len(index["manifests"]) == 1


def test_a_laid_image_written_plain_and_compressed_is_one_image(img: LoadedImage, tmp_path: Path) -> None:
    """slim build verifies the plain form and publishes the compressed one: both must be the
    same image (the same ID) and the compressed layer must inflate to the plain one's bytes."""
    from slim.emitters.image import lay_image

    with lay_image(img, KEEP, sbom="cyclonedx") as laid:
        work = Path(laid.work)
        plain = laid.write(f"oci:{tmp_path / 'plain'}", "none")
        packed = laid.writing(f"oci:{tmp_path / 'gz'}", "gzip").result()
    assert not work.exists()  # the laid tars go with the context
    assert plain.digest == packed.digest and plain.size_bytes == packed.size_bytes
    assert plain.sbom == packed.sbom and plain.packages == packed.packages
    layers = {}
    for name in ("plain", "gz"):
        layout = tmp_path / name
        index = json.loads((layout / "index.json").read_text())
        manifest = json.loads(blob(layout, index["manifests"][0]["digest"]))
        (layer,) = manifest["layers"]
        layers[name] = (layer["mediaType"], blob(layout, layer["digest"]))
        # the SBOM referrer is attached to both
        assert any(m.get("artifactType") == CYCLONEDX_MEDIA_TYPE for m in index["manifests"])
    assert layers["plain"][0].endswith(".tar") and layers["gz"][0].endswith(".tar+gzip")
    assert gzip.decompress(layers["gz"][1]) == layers["plain"][1]


def test_a_cancelled_write_leaves_nothing(img: LoadedImage, tmp_path: Path) -> None:
    from slim.emitters.image import lay_image
    from slim.emitters.imagewriter import Cancelled

    stop = threading.Event()
    stop.set()
    with lay_image(img, KEEP) as laid:
        with pytest.raises(Cancelled, match="write cancelled"):
            laid.write(f"docker-archive:{tmp_path / 'a.tar'}", "gzip", stop=stop)
        assert not any(p.name.startswith(".blob-") for p in Path(laid.work).rglob("*"))
        w = laid.writing(f"oci:{tmp_path / 'b'}", "zstd")
        w.cancel()  # stops it or lets it finish: either way, never half an image
        assert not (tmp_path / "b").exists() or (tmp_path / "b" / "index.json").exists()
    assert not (tmp_path / "a.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
