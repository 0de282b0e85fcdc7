"""Waste categories: the shipped rules on a crafted tree, and rule-file validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from slim.errors import RuleError
from slim.fs.rootfs import RootFS
from slim.fs.tree import FileTree, squash
from slim.model import EntryKind, FileEntry, ImageConfig
from slim.waste import compile_glob, find_waste, image_languages, load_waste_rules


def _rootfs(files: dict[str, int], symlinks: dict[str, str] | None = None) -> RootFS:
    tree = FileTree()
    for path, size in files.items():
        tree.add(FileEntry(path, EntryKind.FILE, size=size))
    for path, target in (symlinks or {}).items():
        tree.add(FileEntry(path, EntryKind.SYMLINK, linkname=target))
    return RootFS(squash([tree]))


CRAFTED = {
    "/var/lib/apt/lists/deb.debian.org_Packages": 1000,
    "/var/lib/apt/lists/lock": 0,
    "/var/cache/apt/archives/curl.deb": 500,
    "/root/.cache/pip/http/ab/cd": 70,
    "/root/.npm/_cacache/index-v5/x": 30,
    "/usr/share/doc/curl/copyright": 40,
    "/usr/share/doc/curl/changelog.gz": 60,
    "/usr/share/man/man1/curl.1.gz": 25,
    "/usr/share/info/dir": 5,
    "/usr/share/locale/de/LC_MESSAGES/curl.mo": 11,
    "/usr/share/locale/fr_FR/LC_MESSAGES/curl.mo": 13,
    "/usr/share/locale/en_GB/LC_MESSAGES/curl.mo": 17,  # en: kept
    "/usr/share/locale/pt_BR/LC_MESSAGES/curl.mo": 19,  # the image's LANG: kept
    "/usr/share/locale/locale.alias": 3,  # not inside a locale directory
    "/usr/lib/locale/C.utf8/LC_CTYPE": 300,  # C: kept
    "/usr/share/i18n/locales/ja_JP": 23,
    "/usr/include/stdio.h": 7,
    "/usr/lib/x86_64-linux-gnu/libc.a": 900,
    "/usr/lib/libfoo.la": 2,
    "/app/pkg/__pycache__/gone.cpython-311.pyc": 33,  # no source: waste
    "/app/pkg/__pycache__/mod.cpython-311.opt-1.pyc": 44,  # source exists: kept
    "/app/pkg/mod.py": 10,
    "/app/legacy.pyc": 55,  # sourceless but importable: kept
    "/tmp/build/obj.o": 80,
    "/var/tmp/x": 8,
    "/var/log/dpkg.log": 90,
    "/usr/bin/curl": 4000,
    "/usr/share/doc/curl/examples/libfoo.a": 9,  # docs first: counted once, in docs
}


def test_shipped_rules_on_a_crafted_tree() -> None:
    fs = _rootfs(CRAFTED, symlinks={"/usr/share/doc/curl/NEWS": "../other/NEWS"})
    config = ImageConfig(env=("PATH=/usr/bin", "LANG=pt_BR.UTF-8"))
    got = {w.name: (w.size_bytes, w.file_count) for w in find_waste(fs, config)}
    assert got == {
        "apt-lists": (1000, 1),  # the lock file is excluded
        "package-caches": (600, 3),
        "docs": (40 + 60 + 9, 4),  # the symlink counts as a file of 0 bytes
        "man": (25, 1),
        "info": (5, 1),
        "locales": (11 + 13 + 23, 3),
        "headers": (7, 1),
        "static-libraries": (902, 2),
        "orphaned-pycache": (33, 1),
        "temp": (88, 2),
        "logs": (90, 1),
    }


def test_each_file_is_counted_once_and_totals_add_up() -> None:
    fs = _rootfs(CRAFTED)
    waste = find_waste(fs, ImageConfig())
    examples = [p for w in waste for p in w.examples]
    assert len(examples) == len(set(examples))
    docs = next(w for w in waste if w.name == "docs")
    assert docs.examples[0] == "/usr/share/doc/curl/changelog.gz"  # largest first
    assert sum(w.size_bytes for w in waste) <= fs.size_bytes


def test_locales_follow_the_image_language() -> None:
    fs = _rootfs({"/usr/share/locale/de/LC_MESSAGES/a.mo": 5, "/usr/share/locale/fr/LC_MESSAGES/a.mo": 7})
    german = ImageConfig(env=("LC_ALL=de_DE.UTF-8",))
    assert {w.name: w.size_bytes for w in find_waste(fs, german)} == {"locales": 7}
    both = ImageConfig(env=("LANGUAGE=fr:de",))
    assert find_waste(fs, both) == []
    assert image_languages(ImageConfig(env=("LANG=C.UTF-8", "LC_MESSAGES=es_ES@euro"))) == {"C", "POSIX", "en", "es"}


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("/**/*.a", "/x.a", True),
        ("/**/*.a", "/usr/lib/x.a", True),
        ("/usr/*.a", "/usr/lib/x.a", False),
        ("/usr/share/doc/**", "/usr/share/doc/a/b", True),
        ("/usr/share/doc/**", "/usr/share/docs/a", False),
        ("/var/log/[!d]*", "/var/log/dpkg.log", False),
        ("/var/log/[!d]*", "/var/log/apt.log", True),
        ("/a?c", "/a/c", False),
    ],
)
def test_glob_semantics(glob: str, path: str, matches: bool) -> None:
    assert bool(compile_glob(glob).match(path)) is matches


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[category.x]\ndescription = "d"\nglobs = ["/a"]\ncolour = 1\n', "[category.x]: unknown key 'colour'"),
        ('[category.x]\nglobs = ["/a"]\n', "[category.x]: missing field 'description'"),
        ('[category.x]\ndescription = "d"\n', "[category.x]: missing field 'globs'"),
        ('[category.x]\ndescription = "d"\nglobs = ["a/b"]\n', "[category.x]: bad glob 'a/b'"),
        ('[category.x]\ndescription = "d"\nglobs = ["/a[bc"]\n', "[category.x]: bad glob '/a[bc'"),
        ('[category.x]\ndescription = "d"\nglobs = []\n', "[category.x]: 'globs' must be a non-empty list"),
        ('[category.x]\ndescription = "d"\nglobs = ["/a"]\ncondition = "maybe"\n', "[category.x]: unknown condition 'maybe'"),
        ('[category.x\n', "invalid TOML"),
        ('[other]\n', "unknown top-level key 'other'"),
    ],
)
def test_invalid_rule_files_name_file_and_category(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "waste.toml"
    file.write_text(text)
    with pytest.raises(RuleError) as info:
        load_waste_rules(file)
    assert str(info.value).startswith(f"{file}: ")
    assert message in str(info.value)


def test_shipped_rules_load_in_file_order() -> None:
    names = [r.name for r in load_waste_rules()]
    assert names[0] == "apt-lists" and names.index("docs") < names.index("static-libraries")
    assert len(names) == len(set(names))
