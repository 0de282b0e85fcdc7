"""The one glob dialect (slim.globs) and the one image-reference parser (slim.refs)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from slim.errors import SourceError, UsageError
from slim.globs import (
    GlobSet,
    check_glob,
    compile_glob,
    has_magic,
    literal_prefix,
    match,
    required_literal,
)
from slim.refs import ImageRef, OutputRef, looks_like_registry, parse_output, parse_ref, split_name


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/usr/*/gcc", "/usr/bin/gcc", True),
        ("/usr/*/gcc", "/usr/lib/gcc-x/gcc", False),  # `*` never crosses '/'
        ("/usr/**/gcc", "/usr/gcc", True),  # `**` matches zero components …
        ("/usr/**/gcc", "/usr/lib/gcc-x/bin/gcc", True),  # … or any number
        ("**/libz.so*", "/usr/lib/x86_64-linux-gnu/libz.so.1", True),
        ("**/libz.so*", "/libz.so.1", True),
        ("/etc/*", "/etc/.hidden", True),  # an image has no hidden files
        ("/root/.cache/**", "/root/.cache/pip/x", True),
        ("/etc/nginx/**", "/etc/nginx", False),
        ("/var/log/[!d]*", "/var/log/apt.log", True),
        ("/var/log/[!d]*", "/var/log/dpkg.log", False),
        ("/a?c", "/a/c", False),
        ("/usr/bin/gcc*", "/usr/bin/gcc-12", True),
        ("**/php/**/*.ini", "/etc/php/8.2/apache2/php.ini", True),
        ("**/php/**/*.ini", "/php/x.ini", True),
        ("**/php/**/*.ini", "/etc/php8/x.ini", False),
        ("**/*.dist-info/RECORD", "/v/lib/a-1.0.dist-info/RECORD", True),
        ("**/*.dist-info/RECORD", "/v/lib/a-1.0.dist-info/RECORDS", False),
        ("/var/lib/dpkg/info/*.list", "/var/lib/dpkg/info/libc6:amd64.list", True),
        ("**/gconv/gconv-modules.d/*.conf", "/usr/lib/x/gconv/gconv-modules.d/a.conf", True),
        ("/x/[ab]c*/d?", "/x/bcz/de", True),
        ("/x/[ab]c*/d?", "/x/ccz/de", False),
        ("/a\\*b/*", "/a*b/c", True),
        ("/a\\*b/*", "/axb/c", False),
    ],
)
def test_glob_dialect(pattern: str, path: str, expected: bool) -> None:
    assert match(path, pattern) is expected
    assert (compile_glob(pattern).match(path) is not None) is expected
    # GlobSet's fast paths (set, suffix, prefix, literal-guarded regex) answer the same
    assert GlobSet([pattern]).match(path) is expected
    assert GlobSet([pattern, "/never/**", "**/never.so*"]).match(path) is expected


def test_required_literal() -> None:
    assert required_literal("**/php/**/*.ini") == ".ini"
    assert required_literal("**/*.dist-info/RECORD") == ".dist-info"
    assert required_literal("/x/[ab]cdef*/g") == "cdef"
    assert required_literal("/a\\*b/*") == ""


def test_glob_helpers() -> None:
    assert has_magic("/a/*") and not has_magic("/a/b")
    assert literal_prefix("/usr/lib/*/gconv/**") == "/usr/lib/"
    assert check_glob("/a[b").startswith("unclosed '['") and check_glob("/a/[!x]*") == ""
    globs = GlobSet(["/usr/include/**", "/usr/bin/gcc*"])
    assert globs.filter(["/usr/include/a/b.h", "/usr/bin/gcc", "/usr/bin/cc"]) == [
        "/usr/bin/gcc", "/usr/include/a/b.h"]
    assert globs.first("/usr/bin/gcc-12") == "/usr/bin/gcc*" and not GlobSet([])


def _tar(path: Path, names: list[str]) -> None:
    with tarfile.open(path, "w") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            tf.addfile(info)


def test_input_references(tmp_path: Path) -> None:
    assert parse_ref("docker://reg.example/app:1") == ImageRef("docker", "reg.example/app:1")
    assert parse_ref("oci:/x/y:v1") == ImageRef("oci", "/x/y", "v1")
    assert parse_ref("oci-archive:/x/y.tar") == ImageRef("oci-archive", "/x/y.tar")
    assert parse_ref("docker-daemon:app:1") == ImageRef("docker-daemon", "app:1")
    assert parse_ref("rootfs:/srv/root") == ImageRef("rootfs", "/srv/root")
    assert parse_ref("alpine:3.19") == ImageRef("auto", "alpine:3.19")
    # an existing directory whose name has a ':' is a DIR, not DIR:TAG
    d = tmp_path / "lay:out"
    d.mkdir()
    (d / "oci-layout").write_text("{}")
    assert parse_ref(f"oci:{d}") == ImageRef("oci", str(d))
    assert parse_ref(str(d)) == ImageRef("oci", str(d))
    docker = tmp_path / "d.tar"
    _tar(docker, ["manifest.json"])
    assert parse_ref(str(docker)) == ImageRef("docker-archive", str(docker))
    assert parse_ref(f"docker-archive:{docker}:app:v1") == ImageRef("docker-archive", str(docker), "app:v1")
    oci = tmp_path / "o.tar"
    _tar(oci, ["oci-layout", "index.json"])
    assert parse_ref(str(oci)) == ImageRef("oci-archive", str(oci))
    for bad, message in [("", "empty"), ("oci:", "missing location"), ("docker://", "missing a name"),
                         (str(tmp_path / "missing.tar"), "no such file"),
                         (str(tmp_path), "use rootfs:")]:
        with pytest.raises(SourceError, match=message):
            parse_ref(bad)


def test_output_references() -> None:
    assert parse_output("oci:/out/img") == OutputRef("oci", "/out/img")
    assert parse_output("oci:/out/img:v2") == OutputRef("oci", "/out/img", "v2")
    assert parse_output("oci-archive:/out/i.tar") == OutputRef("oci-archive", "/out/i.tar")
    assert parse_output("docker-archive:/out/i.tar:app:v1") == OutputRef("docker-archive", "/out/i.tar", "app:v1")
    assert parse_output("docker://localhost:5000/x:1") == OutputRef("docker", "localhost:5000/x:1")
    assert str(parse_output("oci:/out/img:v2")) == "oci:/out/img:v2"
    for bad in ("dir:/x", "rootfs:/x", "oci:", "docker://", "/plain/path"):
        with pytest.raises(UsageError, match="must be oci:DIR"):
            parse_output(bad)


def test_names() -> None:
    assert split_name("app:v1") == ("app", "v1")
    assert split_name("localhost:5000/app") == ("localhost:5000/app", "")
    assert split_name("localhost:5000/app:2") == ("localhost:5000/app", "2")
    assert split_name("app@sha256:abc") == ("app@sha256:abc", "")
    assert looks_like_registry("registry.example/app") and looks_like_registry("localhost:5000/x")
    assert looks_like_registry("localhost/app")
    assert not looks_like_registry("alpine") and not looks_like_registry("library/alpine:3")
