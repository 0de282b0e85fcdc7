"""Rule packs: validation errors name file and entry; shipped runtime rules on crafted trees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slim.errors import RuleError
from slim.image import LoadedImage
from slim.model import ROOT, Edge
from slim.pipeline import load_image
from slim.rules import keep_glob_edges, load_rules, locale_names, nsswitch_services, parse_rule_pack

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def put(root: Path, path: str, data: str = "x") -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(data)


def config(root: Path, env: list[str]) -> None:
    (root / ".slim-config.json").write_text(json.dumps({"config": {"Env": env}}))


def open_root(root: Path, opened: list[LoadedImage]) -> LoadedImage:
    img = load_image(f"rootfs:{root}")
    opened.append(img)
    return img


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[rule.a]\nwhen.kept = "**/x"\nkeep = ["/y"]\nkeeps = 1\n', "[rule.a]: unknown key(s) keeps"),
        ('[rule.b]\nkeep = ["/y"]\n', "[rule.b]: missing 'when'"),
        ('[rule.c]\nwhen.kept = "**/x"\n', "[rule.c]: missing 'keep'"),
        ('[rule.d]\nwhen.kept = "**/x"\nkeep = ["y/z"]\n', "[rule.d]: 'keep': 'y/z' must be an absolute"),
        ('[rule.e]\nwhen.kept = "**/x"\nkeep = ["/a[b"]\n', "[rule.e]: 'keep': '/a[b': unclosed '['"),
        ('[rule.f]\nwhen.kept = "**/x"\nkeep = "/y"\ndescription = 3\n', "[rule.f]: 'description' must be a string"),
        ('[rule.g]\nwhen.kept = 5\nkeep = ["/y"]\n', "[rule.g]: 'when.kept' must be a string or a list of strings, got int"),
        ('[rule.h]\nwhen.colour = "red"\nkeep = ["/y"]\n', "[rule.h]: 'when' has unknown key(s) colour"),
        ('[rule.i]\nwhen.always = true\nwhen.env = "TZ"\nkeep = ["/y"]\n', "[rule.i]: 'when.always' cannot be combined"),
        ('[rule.j]\nwhen.always = "yes"\nkeep = ["/y"]\n', "[rule.j]: 'when.always' must be a boolean"),
        ('[rule.k]\nwhen.env = "1BAD"\nkeep = ["/y"]\n', "[rule.k]: 'when.env': '1BAD' is not a variable name"),
        ('[rule.l]\nwhen.kept = "**/x"\nhandler = "magic"\n', "[rule.l]: unknown handler 'magic'"),
        ('[rule.m]\nwhen.kept = "**/x"\nkeep = ["/../etc"]\n', "[rule.m]: 'keep': '/../etc' must not contain '..'"),
        ('[rule.n]\nwhen.file_exists = "/etc/*"\nkeep = ["/y"]\n', "[rule.n]: 'when.file_exists'"),
        ('[rule.o]\nwhen.kept = "**/x"\nkeep = []\n', "[rule.o]: 'keep' is empty"),
        ("[rule.p\n", "invalid TOML"),
        ('[other]\nx = 1\n', "no [rule.NAME] tables"),
        ('[rule.q]\nwhen.kept = "**/x"\nkeep = ["/y"]\n[extra]\n', "unknown top-level key(s) extra"),
    ],
)
def test_validation_errors_name_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    pack = tmp_path / "site.toml"
    pack.write_text(text)
    with pytest.raises(RuleError) as exc:
        load_rules([tmp_path], shipped=False)
    assert str(exc.value).startswith(f"{pack}: ")
    assert message in str(exc.value)


def test_duplicate_name_in_one_dir(tmp_path: Path) -> None:
    body = '[rule.same]\nwhen.kept = "**/x"\nkeep = ["/y"]\n'
    (tmp_path / "a.toml").write_text(body)
    (tmp_path / "b.toml").write_text(body)
    with pytest.raises(RuleError, match=r"b\.toml: \[rule\.same\]: already defined in .*a\.toml"):
        load_rules([tmp_path], shipped=False)


def test_missing_rules_dir(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="no such rules directory"):
        load_rules([tmp_path / "nope"], shipped=False)


def test_shipped_packs_load_and_user_rules_override(tmp_path: Path) -> None:
    shipped = load_rules()
    for name in ("nss", "libgcc-s", "locale", "zoneinfo-tz", "ca-certificates",
                 "ld-so-cache", "os-release", "nginx", "python3", "lighttpd"):
        assert shipped.get(name) is not None, name
    (tmp_path / "mine.toml").write_text('[rule.nss]\nwhen = "**/libc.so.6"\nkeep = ["/only/this"]\n')
    merged = load_rules([tmp_path])
    rule = merged.get("nss")
    assert rule is not None and rule.keep == ("/only/this",) and rule.file.endswith("mine.toml")
    assert len(merged.rules) == len(shipped.rules)


def test_shipped_packs_pass_the_checks_user_packs_get(tmp_path: Path) -> None:
    """Loading the shipped packs skips compiling their globs (every run pays for that): here
    each shipped pack is parsed as a user pack, with every glob compiled."""
    from slim.rules import rules_dir

    packs = [p for p in sorted(rules_dir().glob("*.toml")) if "[rule." in p.read_text(encoding="utf-8")]
    assert packs
    for pack in packs:  # (the directory holds other TOML data too)
        (tmp_path / pack.name).write_text(pack.read_text(encoding="utf-8"), encoding="utf-8")
    assert len(load_rules([tmp_path], shipped=False).rules) == len(load_rules().rules)


def test_parse_rule_pack_shorthand_and_lists() -> None:
    rules = parse_rule_pack('[rule.x]\nwhen = ["**/a", "/b"]\nkeep = "/c"\n', "t.toml")
    assert rules[0].when.kept == ("**/a", "/b") and rules[0].keep == ("/c",)


# -- runtime rules on crafted trees ------------------------------------------------------------


def test_nsswitch_services_parsing() -> None:
    text = "# c\npasswd: files systemd\nhosts: files [NOTFOUND=return] mdns4_minimal dns # x\nbad line\n"
    assert nsswitch_services(text) == ["dns", "files", "mdns4_minimal", "systemd"]


def test_nss_modules_from_nsswitch(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, LIBC)
    for svc in ("files", "dns", "systemd", "ldap"):
        put(root, f"/usr/lib/x86_64-linux-gnu/libnss_{svc}.so.2")
    put(root, "/etc/nsswitch.conf", "passwd: files systemd\nhosts: files [NOTFOUND=return] dns\n")
    put(root, "/etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    put(root, "/etc/hosts", "127.0.0.1 localhost\n")
    img = open_root(root, opened)
    edges = load_rules().apply(LIBC, img.rootfs, img.image.config)
    nss = {e.dst for e in edges if e.evidence == "nss"}
    assert {f"/usr/lib/x86_64-linux-gnu/libnss_{s}.so.2" for s in ("files", "dns", "systemd")} <= nss
    assert "/usr/lib/x86_64-linux-gnu/libnss_ldap.so.2" not in nss
    assert {"/etc/nsswitch.conf", "/etc/passwd", "/etc/hosts"} <= nss
    assert all(e.src == LIBC and e.kind == "rule" for e in edges)
    # a path no rule matches gets nothing
    assert load_rules().apply("/usr/bin/true", img.rootfs, img.image.config) == []


def test_nss_defaults_without_nsswitch(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, LIBC)
    put(root, "/lib64/libnss_dns.so.2")
    put(root, "/lib64/libnss_compat.so.2")
    img = open_root(root, opened)
    nss = {e.dst for e in load_rules().apply(LIBC, img.rootfs, img.image.config) if e.evidence == "nss"}
    assert "/lib64/libnss_dns.so.2" in nss and "/lib64/libnss_compat.so.2" not in nss


def zone_tree(root: Path) -> None:
    for zone in ("UTC", "Etc/UTC", "Europe/Paris", "Asia/Tokyo", "posixrules"):
        put(root, f"/usr/share/zoneinfo/{zone}", "TZif")


def test_zoneinfo_with_tz(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    zone_tree(root)
    config(root, ["TZ=:Europe/Paris"])
    img = open_root(root, opened)
    edges = load_rules().always(img.rootfs, img.image.config)
    zones = {e.dst for e in edges if e.evidence == "zoneinfo-tz"}
    assert {"/usr/share/zoneinfo/Europe/Paris", "/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/UTC"} <= zones
    assert "/usr/share/zoneinfo/Asia/Tokyo" not in zones
    assert all(e.src == ROOT for e in edges)


def test_zoneinfo_posix_tz_keeps_all(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    zone_tree(root)
    config(root, ["TZ=EST5EDT,M3.2.0,M11.1.0"])
    img = open_root(root, opened)
    zones = {e.dst for e in load_rules().always(img.rootfs, img.image.config)}
    assert "/usr/share/zoneinfo/Asia/Tokyo" in zones


def test_zoneinfo_from_localtime_link(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    zone_tree(root)
    (root / "etc").mkdir()
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/Asia/Tokyo")
    img = open_root(root, opened)
    zones = {e.dst for e in load_rules().always(img.rootfs, img.image.config)
             if e.evidence == "zoneinfo-localtime"}
    assert {"/etc/localtime", "/usr/share/zoneinfo/Asia/Tokyo", "/usr/share/zoneinfo/UTC"} <= zones
    assert "/usr/share/zoneinfo/Europe/Paris" not in zones


def test_no_tz_no_localtime_no_zoneinfo(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    zone_tree(root)
    put(root, "/etc/os-release", "ID=test\n")
    img = open_root(root, opened)
    edges = load_rules().always(img.rootfs, img.image.config)
    assert edges == [Edge(ROOT, "/etc/os-release", "rule", "os-release")]


def test_locale_names_glibc_spellings() -> None:
    assert locale_names("de_DE.UTF-8@euro") == ["de_DE.UTF-8@euro", "de_DE.utf8@euro", "de_DE.UTF-8", "de_DE", "de"]
    assert locale_names("C") == [] and locale_names("POSIX") == []


def test_locale_from_lang(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, LIBC)
    put(root, "/usr/lib/locale/C.utf8/LC_CTYPE")
    put(root, "/usr/lib/locale/de_DE.utf8/LC_CTYPE")
    put(root, "/usr/lib/locale/en_US.utf8/LC_CTYPE")
    put(root, "/usr/lib/locale/locale-archive")
    config(root, ["LANG=de_DE.UTF-8"])
    img = open_root(root, opened)
    kept = {e.dst for e in load_rules().apply(LIBC, img.rootfs, img.image.config) if e.evidence == "locale"}
    assert {"/usr/lib/locale/C.utf8/LC_CTYPE", "/usr/lib/locale/de_DE.utf8/LC_CTYPE",
            "/usr/lib/locale/locale-archive"} <= kept
    assert "/usr/lib/locale/en_US.utf8/LC_CTYPE" not in kept


def test_locale_without_lang_keeps_only_c_utf8(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, LIBC)
    put(root, "/usr/lib/locale/C.utf8/LC_CTYPE")
    put(root, "/usr/lib/locale/locale-archive")
    img = open_root(root, opened)
    kept = {e.dst for e in load_rules().apply(LIBC, img.rootfs, img.image.config) if e.evidence == "locale"}
    assert kept == {"/usr/lib/locale/C.utf8", "/usr/lib/locale/C.utf8/LC_CTYPE"}


def test_ca_bundle_when_tls_library_kept(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, "/usr/lib/x86_64-linux-gnu/libssl.so.3")
    put(root, "/etc/ssl/certs/ca-certificates.crt", "PEM")
    put(root, "/usr/share/ca-certificates/mozilla/A.crt", "PEM")
    img = open_root(root, opened)
    rules = load_rules()
    edges = rules.apply("/usr/lib/x86_64-linux-gnu/libssl.so.3", img.rootfs, img.image.config)
    assert {e.dst for e in edges} == {"/etc/ssl/certs/ca-certificates.crt", "/usr/share/ca-certificates/mozilla",
                                      "/usr/share/ca-certificates/mozilla/A.crt"}
    assert {e.evidence for e in edges} == {"ca-certificates"}


def test_keep_glob_edges(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, "/data/a.txt")
    put(root, "/data/b.bin")
    img = open_root(root, opened)
    assert keep_glob_edges(img.rootfs, ["/data/*.txt"]) == [Edge(ROOT, "/data/a.txt", "rule", "--keep /data/*.txt")]
