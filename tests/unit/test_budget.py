"""Budgets (.slim.toml / [tool.slim]): parsing with errors that name file and key, each gate's
verdict and message, the check cache, and `slim check` exit codes."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slim.budget import (
    BudgetConfig,
    evaluate,
    expand_packages,
    failed,
    find_config,
    match_paths,
    parse_config,
    parse_size,
    read_config,
    resolve_reference,
)
from slim.check_cache import check_image
from slim.cli import app
from slim.errors import RuleError
from slim.result import (
    AnalysisResult,
    Efficiency,
    ImageSummary,
    LayerSummary,
    PackageSummary,
    Totals,
    result_from_plain,
    to_plain,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
GLIBC = f"docker-archive:{SAMPLES / 'hello-glibc' / 'hello-glibc.docker.tar'}"
MUSL = f"docker-archive:{SAMPLES / 'hello-musl' / 'hello-musl.docker.tar'}"


def make_result(size: int = 1_000_000, removable: int | None = 400_000, score: float | None = 0.95,
                packages: tuple[str, ...] = ("libc6", "bash"), reference: str = "test:image") -> AnalysisResult:
    image = ImageSummary(
        reference=reference, digest="sha256:" + "0" * 64, os="linux", architecture="amd64",
        entrypoint=("/app",), cmd=(), env={}, workdir="/", user="", size_bytes=size, file_count=10,
        layers=(LayerSummary(0, "sha256:a", "sha256:b", "ADD base", size, 10),),
    )
    result = AnalysisResult(image=image,
                            packages=[PackageSummary(n, "1.0", "dpkg", 1000, 0, True) for n in packages])
    if score is not None:
        result = dataclasses.replace(result, efficiency=Efficiency(
            score=score, wasted_bytes=0, user_wasted_percent=0.0, removable_by_squash_bytes=0))
    if removable is not None:
        result = dataclasses.replace(result, reachable=Totals(size - removable, 5),
                                     removable=Totals(removable, 5))
    return result


# -- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    (512, 512), ("512", 512), ("200MB", 200_000_000), ("200 MB", 200_000_000), ("1.5GiB", 1536 * 1024**2),
    ("10kB", 10_000), ("3KiB", 3072), ("1TB", 10**12), ("7B", 7),
])
def test_parse_size_units(text: object, expected: int) -> None:
    assert parse_size(text, "f.toml", "max_size") == expected


@pytest.mark.parametrize("bad", ["12XB", "MB", "-3MB", -1, True, [1], "1.2.3MB"])
def test_parse_size_rejects_with_file_and_key(bad: object) -> None:
    with pytest.raises(RuleError, match=r"^f\.toml: max_size: "):
        parse_size(bad, "f.toml", "max_size")


def test_unknown_key_names_file_and_key() -> None:
    with pytest.raises(RuleError, match=r"^cfg\.toml: max_sise: unknown key"):
        parse_config({"max_sise": "1MB"}, "cfg.toml")


@pytest.mark.parametrize(("key", "value"), [
    ("max_removable_percent", 150), ("max_removable_percent", "lots"), ("min_efficiency", 90),
    ("min_efficiency", "x%"), ("max_growth", "5 parsecs"), ("forbid_paths", "relative/path"),
    ("forbid_paths", [1]), ("forbid_packages", ["@editors"]), ("image", 3), ("base", ""),
])
def test_bad_values_name_file_and_key(key: str, value: object) -> None:
    with pytest.raises(RuleError, match=rf"^cfg\.toml: {key}: "):
        parse_config({key: value}, "cfg.toml")


def test_parse_config_values() -> None:
    cfg = parse_config({
        "image": "docker-archive:a.tar", "max_size": "2MiB", "max_removable_percent": "30%",
        "min_efficiency": "90%", "max_growth": "5%", "forbid_paths": ["/usr/include/**"],
        "forbid_packages": ["@shells", "gcc*"],
    }, "x")
    assert cfg.max_size == 2 * 1024**2
    assert cfg.max_removable_percent == 30
    assert cfg.min_efficiency == pytest.approx(0.9)
    assert cfg.max_growth_percent == 5 and cfg.max_growth_bytes is None
    assert cfg.gates == sorted(["forbid_packages", "forbid_paths", "max_growth", "max_removable_percent", "max_size", "min_efficiency"])
    assert parse_config({"max_growth": "1MB"}, "x").max_growth_bytes == 1_000_000


def test_read_config_files(tmp_path: Path) -> None:
    (tmp_path / ".slim.toml").write_text('max_size = "1MB"\n')
    assert read_config(tmp_path / ".slim.toml").max_size == 1_000_000
    py = tmp_path / "sub" / "pyproject.toml"
    py.parent.mkdir()
    py.write_text('[project]\nname = "x"\n\n[tool.slim]\nmin_efficiency = 0.5\nbogus = 1\n')
    with pytest.raises(RuleError, match=r"pyproject\.toml \[tool\.slim\]: bogus: unknown key"):
        read_config(py)
    (tmp_path / "bad.toml").write_text("max_size = \n")
    with pytest.raises(RuleError, match=r"bad\.toml: invalid TOML"):
        read_config(tmp_path / "bad.toml")
    with pytest.raises(RuleError, match=r"missing\.toml: cannot read"):
        read_config(tmp_path / "missing.toml")


def test_find_config_walks_up_to_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "a" / "b").mkdir(parents=True)
    assert find_config(repo / "a" / "b") is None
    (repo / "pyproject.toml").write_text("[tool.slim]\nmax_size = 1\n")
    assert find_config(repo / "a" / "b") == (repo / "pyproject.toml").resolve()
    (repo / "a" / ".slim.toml").write_text("max_size = 2\n")
    assert find_config(repo / "a" / "b") == (repo / "a" / ".slim.toml").resolve()


def test_resolve_reference_relative_to_config(tmp_path: Path) -> None:
    assert resolve_reference("docker-archive:b/app.tar", tmp_path) == f"docker-archive:{tmp_path}/b/app.tar"
    assert resolve_reference("oci:/abs/dir", tmp_path) == "oci:/abs/dir"
    assert resolve_reference("nginx:1.25", tmp_path) == "nginx:1.25"


# -- gates -----------------------------------------------------------------------------------
def _verdict(verdicts: list, rule: str):  # type: ignore[no-untyped-def]
    (v,) = [v for v in verdicts if v.rule == rule]
    return v


def test_max_size_gate() -> None:
    over = evaluate(make_result(size=3_000_000), BudgetConfig(max_size=2_000_000))
    v = _verdict(over, "max_size")
    assert v.status == "fail" and "exceeds max_size" in v.message and "3000000 bytes" in v.message
    assert v.measured == "3.0 MB" and v.threshold == "≤ 2.0 MB"
    assert _verdict(evaluate(make_result(size=2_000_000), BudgetConfig(max_size=2_000_000)), "max_size").status == "pass"


def test_max_removable_percent_gate() -> None:
    cfg = BudgetConfig(max_removable_percent=30)
    v = _verdict(evaluate(make_result(size=1000, removable=400), cfg), "max_removable_percent")
    assert (v.status, v.measured, v.threshold) == ("fail", "40.0 %", "≤ 30.0 %")
    assert "above max_removable_percent" in v.message
    assert _verdict(evaluate(make_result(size=1000, removable=300), cfg), "max_removable_percent").status == "pass"
    # not measured (no static analysis) is a warning, never a silent pass
    assert _verdict(evaluate(make_result(removable=None), cfg), "max_removable_percent").status == "warn"


def test_min_efficiency_gate() -> None:
    cfg = BudgetConfig(min_efficiency=0.9)
    v = _verdict(evaluate(make_result(score=0.85), cfg), "min_efficiency")
    assert (v.status, v.measured, v.threshold) == ("fail", "85.0 %", "≥ 90.0 %")
    assert _verdict(evaluate(make_result(score=0.9), cfg), "min_efficiency").status == "pass"
    assert _verdict(evaluate(make_result(score=None), cfg), "min_efficiency").status == "warn"


def test_max_growth_gate_bytes_and_percent() -> None:
    base = make_result(size=1_000_000, reference="base:img")
    head = make_result(size=1_100_000)
    v = _verdict(evaluate(head, BudgetConfig(max_growth_bytes=50_000), base), "max_growth")
    assert v.status == "fail" and v.measured.startswith("+") and "base:img" in v.message
    assert _verdict(evaluate(head, BudgetConfig(max_growth_bytes=100_000), base), "max_growth").status == "pass"
    assert _verdict(evaluate(head, BudgetConfig(max_growth_percent=5), base), "max_growth").status == "fail"
    v = _verdict(evaluate(head, BudgetConfig(max_growth_percent=10), base), "max_growth")
    assert v.status == "pass" and v.threshold.startswith("≤ 10 %")
    assert _verdict(evaluate(head, BudgetConfig(max_growth_percent=10)), "max_growth").status == "warn"
    shrink = _verdict(evaluate(make_result(size=10), BudgetConfig(max_growth_bytes=0), base), "max_growth")
    assert shrink.status == "pass" and shrink.measured.startswith("-")


def test_forbid_packages_gate_with_groups() -> None:
    assert "bash" in expand_packages(["@shells"])
    v = _verdict(evaluate(make_result(packages=("libc6", "bash", "gcc-12")), BudgetConfig(forbid_packages=("@shells", "@compilers"))), "forbid_packages")
    assert v.status == "fail" and "bash (dpkg)" in v.message and "gcc-12 (dpkg)" in v.message and v.measured == "2 package(s)"
    assert _verdict(evaluate(make_result(packages=("libc6",)), BudgetConfig(forbid_packages=("@shells",))), "forbid_packages").status == "pass"
    assert _verdict(evaluate(make_result(packages=()), BudgetConfig(forbid_packages=("bash",))), "forbid_packages").status == "warn"


def test_forbid_paths_gate_and_globs() -> None:
    paths = ["/usr/include/zlib.h", "/usr/include/sys/x.h", "/usr/bin/gcc-12", "/usr/bin/cc", "/etc/passwd"]
    assert match_paths(paths, ["/usr/include/*"]) == ["/usr/include/zlib.h"]
    assert match_paths(paths, ["/usr/include/**"]) == ["/usr/include/sys/x.h", "/usr/include/zlib.h"]
    assert match_paths(paths, ["/usr/bin/gcc*"]) == ["/usr/bin/gcc-12"]
    cfg = BudgetConfig(forbid_paths=("/usr/include/**",))
    v = _verdict(evaluate(make_result(), cfg, forbidden_paths=["/usr/include/zlib.h"]), "forbid_paths")
    assert v.status == "fail" and "/usr/include/zlib.h" in v.message
    assert _verdict(evaluate(make_result(), cfg, forbidden_paths=[]), "forbid_paths").status == "pass"
    assert _verdict(evaluate(make_result(), cfg), "forbid_paths").status == "warn"


def test_verdicts_sorted_and_failed() -> None:
    cfg = BudgetConfig(max_size=1, min_efficiency=0.1, forbid_packages=("zsh",))
    verdicts = evaluate(make_result(), cfg)
    assert [v.rule for v in verdicts] == sorted(v.rule for v in verdicts)
    assert failed(verdicts)
    assert not failed(evaluate(make_result(), BudgetConfig(min_efficiency=0.1)))
    assert evaluate(make_result(), BudgetConfig()) == []


# -- cache -----------------------------------------------------------------------------------
def test_result_json_round_trip() -> None:
    result = make_result()
    assert result_from_plain(json.loads(json.dumps(to_plain(result)))) == result


def test_check_cache_hit_skips_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path))
    cfg = BudgetConfig(forbid_paths=("/usr/include/**",))
    cold = check_image(GLIBC, cfg)
    assert not cold.cached and cold.forbidden_paths == ["/usr/include/zconf.h", "/usr/include/zlib.h"]
    assert list((tmp_path / "check").glob("*.json"))

    import slim.image

    def no_load(*a: object, **k: object) -> None:
        raise AssertionError("a cache hit must not read layers")

    monkeypatch.setattr(slim.image, "load", no_load)
    started = time.monotonic()
    warm = check_image(GLIBC, cfg)
    assert warm.cached and time.monotonic() - started < 1.0
    assert warm.result == cold.result and warm.forbidden_paths == cold.forbidden_paths
    # another configuration is another entry
    with pytest.raises(AssertionError, match="cache hit"):
        check_image(GLIBC, BudgetConfig(forbid_paths=("/etc/**",)))


def test_rootfs_is_never_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app").write_bytes(b"x" * 10)
    assert not check_image(f"rootfs:{root}", BudgetConfig()).cached
    assert not check_image(f"rootfs:{root}", BudgetConfig()).cached
    assert not (tmp_path / "cache" / "check").exists()


def test_broken_cache_entry_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path))
    check_image(MUSL, BudgetConfig())
    (entry,) = (tmp_path / "check").glob("*.json")
    entry.write_text("{not json")
    again = check_image(MUSL, BudgetConfig())
    assert not again.cached and again.result.image.size_bytes > 0


# -- CLI -------------------------------------------------------------------------------------
def _run(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(app, args)


def test_cli_check_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".slim.toml").write_text(f'image = "{GLIBC}"\nmax_size = "1MB"\nmin_efficiency = 0.5\n')
    res = _run(["check"], tmp_path, monkeypatch)
    assert res.exit_code == 1, res.output
    assert "max_size" in res.output and "fail" in res.output and "exceeds max_size" in res.output

    (tmp_path / ".slim.toml").write_text(f'image = "{GLIBC}"\nmax_size = "10MB"\nforbid_packages = ["@shells"]\n')
    res = _run(["check"], tmp_path, monkeypatch)
    assert res.exit_code == 0, res.output
    assert "2 passed, 0 warned, 0 failed" in res.output

    other = tmp_path / "other.toml"
    other.write_text('max_size = "1kB"\n')
    res = _run(["check", MUSL, "--config", str(other)], tmp_path, monkeypatch)
    assert res.exit_code == 1 and "hello-musl" in res.output


def test_cli_check_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".slim.toml").write_text('max_size = "lots"\n')
    res = _run(["check", GLIBC], tmp_path, monkeypatch)
    assert res.exit_code == 3
    assert ".slim.toml: max_size:" in res.output
    (tmp_path / ".slim.toml").unlink()
    res = _run(["check"], tmp_path, monkeypatch)
    assert res.exit_code == 2 and "no image to check" in res.output
