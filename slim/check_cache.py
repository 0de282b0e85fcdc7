"""The analysis behind `slim check`, cached so a second check of an unchanged image is fast.

An entry is keyed by the image ID (config digest), the ordered layer digests, the slim version and
the budget configuration's hash; it holds the AnalysisResult (plain JSON, never pickle: a cache
file is data, not code) plus the paths that matched `forbid_paths`. On a hit only the image's
manifest and config are read (`slim.sources.open_image`), never a layer. Images without a content
address (`rootfs:` directories) are never cached: their files can change without a digest saying so.

Location: `$SLIM_CACHE_DIR/check/` when set, else `$XDG_CACHE_HOME/slim/check/` (~/.cache/slim/check/).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import tempfile
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slim import __version__
from slim.budget import BudgetConfig, match_paths
from slim.result import AnalysisResult

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
MAX_ENTRIES = 256  # oldest entries beyond this are removed on write


@dataclass(frozen=True)
class CheckedImage:
    """What `slim check` needs from one image."""

    result: AnalysisResult
    forbidden_paths: list[str]
    cached: bool


def cache_dir() -> Path:
    """Where check results live (created on first write)."""
    root = os.environ.get("SLIM_CACHE_DIR")
    if root:
        return Path(root) / "check"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "slim" / "check"


def cache_key(image_id: str, layer_digests: list[str], config: BudgetConfig, static: bool = True) -> str | None:
    """The entry name for an image, or None when the image has no content address."""
    if not image_id or not layer_digests or not all(layer_digests):
        return None
    material = json.dumps(
        {"format": CACHE_FORMAT, "image": image_id, "layers": layer_digests, "slim": __version__,
         "config": config.digest(), "static": static},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


# -- AnalysisResult <-> JSON -----------------------------------------------------------------
def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


@functools.cache
def _field_types(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, resolved annotation) of a dataclass's fields; resolving is slow, so once per class."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def _from_plain(tp: Any, data: Any) -> Any:
    """Rebuild a value of annotated type `tp` (dataclasses, tuple[X, ...], list[X], X | None …)."""
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_plain(inner[0], data) if len(inner) == 1 else data
    if origin in (list, tuple):
        (item, *_rest) = typing.get_args(tp) or (Any,)
        values = [_from_plain(item, v) for v in data]
        return tuple(values) if origin is tuple else values
    if origin is dict:
        return dict(data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        fields = _field_types(tp)
        return tp(**{name: _from_plain(ftype, data[name]) for name, ftype in fields if name in data})
    if tp is float and isinstance(data, int):
        return float(data)
    return data


def result_to_json(result: AnalysisResult) -> dict[str, Any]:
    plain: dict[str, Any] = _to_plain(result)
    return plain


def result_from_json(data: dict[str, Any]) -> AnalysisResult:
    """Raises KeyError / TypeError / ValueError on a malformed entry (the caller treats it as a miss)."""
    result = _from_plain(AnalysisResult, data)
    if not isinstance(result, AnalysisResult):
        raise TypeError("not an AnalysisResult")
    return result


# -- the cached check ------------------------------------------------------------------------
def _read_entry(path: Path) -> tuple[AnalysisResult, list[str]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != CACHE_FORMAT:
            return None
        return result_from_json(data["result"]), sorted(str(p) for p in data["forbidden_paths"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.info("%s: ignoring a broken cache entry: %s", path, exc)
        return None


def _write_entry(path: Path, result: AnalysisResult, forbidden: list[str]) -> None:
    """Write whole then rename, so a reader never sees half an entry. Failures only log."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": CACHE_FORMAT, "result": result_to_json(result),
                       "forbidden_paths": forbidden}, f, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("%s: cannot write the check cache: %s", path, exc.strerror)
        return
    _prune(path.parent)


def _prune(directory: Path, keep: int = MAX_ENTRIES) -> None:
    """Remove the least recently written entries beyond `keep` (best effort)."""
    try:
        entries = sorted(directory.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
        for old in entries[keep:]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("%s: pruning the check cache: %s", directory, exc)


def check_image(reference: str, config: BudgetConfig, *, use_cache: bool = True, static: bool = True) -> CheckedImage:
    """Analyze `reference` for `slim check`, from the cache when the image is unchanged.

    Raises SourceError / LayerError / AnalysisError / RuleError from opening and analyzing.
    """
    # only slim.sources here: slim.pipeline imports networkx (slow), needed on a miss only
    from slim.sources import open_image

    image = open_image(reference)  # manifest + config only
    # legacy `docker save` archives name layers by path only: fall back to the config's diff_ids,
    # which the image ID (the config digest) already content-addresses
    diff_ids = list(getattr(image, "diff_ids", []) or [])
    layer_ids = [
        layer.digest or layer.diff_id or (diff_ids[i] if i < len(diff_ids) else "")
        for i, layer in enumerate(image.layers)
    ]
    key = cache_key(image.digest, layer_ids, config, static)
    entry = cache_dir() / f"{key}.json" if key else None
    if use_cache and entry is not None:
        hit = _read_entry(entry)
        if hit is not None:
            image.close()
            result, forbidden = hit
            log.info("%s: check cache hit (%s)", reference, entry)
            result.image = dataclasses.replace(result.image, reference=str(image.ref))
            return CheckedImage(result, forbidden, cached=True)
    from slim.pipeline import AnalyzeOptions, analyze, load

    with load(reference, image=image) as loaded:
        result, _closure = analyze(loaded, AnalyzeOptions(static=static))
        forbidden = match_paths((e.path for e in loaded.rootfs.walk()), config.forbid_paths)
        if not static:
            _add_packages(result, loaded)
    if entry is not None:
        _write_entry(entry, result, forbidden)
    return CheckedImage(result, forbidden, cached=False)


def _add_packages(result: AnalysisResult, loaded: Any) -> None:
    """Installed packages without the closure (kept bytes 0), for forbid_packages and diffs."""
    try:
        from slim.analyzers.packages import package_summaries, read_packages
    except ImportError:
        return
    result.packages = package_summaries(read_packages(loaded.rootfs), loaded.rootfs, set())
