"""The analysis behind `slim check`, cached so a second check of an unchanged image is fast.

The cache is slim.result_cache, keyed also by the budget configuration's hash; an entry holds
the paths that matched `forbid_paths` besides the result. On a hit the layers are hashed,
never parsed; an image in the Docker daemon is not even saved (result_cache: `daemon_key`).
Images without a content address (`rootfs:` directories) are never cached.
Location: slim.cache, kind `check`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from slim.budget import BudgetConfig, match_paths
from slim.result import AnalysisResult
from slim.result_cache import ResultCache, blob_identity, result_key


@dataclass(frozen=True)
class CheckedImage:
    """What `slim check` needs from one image."""

    result: AnalysisResult
    forbidden_paths: list[str]
    cached: bool


CACHE = ResultCache("check")


def check_image(reference: str, config: BudgetConfig, *, use_cache: bool = True, static: bool = True) -> CheckedImage:
    """Analyze `reference` for `slim check`, from the cache when the image is unchanged.

    Raises SourceError / LayerError / AnalysisError / RuleError from opening and analyzing.
    """
    # only slim.sources here: slim.pipeline imports networkx (slow), needed on a miss only
    from slim.refs import parse_ref
    from slim.sources import open_image

    material = {"budget": config.digest(), "static": static}
    # its ID and diff_ids from `docker inspect`: an unchanged image is not saved again
    inspected = CACHE.get_daemon_first(parse_ref(reference), material) if use_cache else None
    if inspected is not None:
        hit, key, expected = inspected
        blobs = None
        if hit is not None:
            return _checked(hit)
    image = open_image(reference)  # manifest + config only (a daemon's image: saved)
    if inspected is None:
        key, expected, blobs = result_key(image, material), image.digest, blob_identity(image)
        hit = CACHE.get(key, image) if use_cache else None
        if hit is not None:
            image.close()
            return _checked(hit)
    from slim.image import load
    from slim.pipeline import AnalyzeOptions, analyze, capture_policy

    with load(image, capture=capture_policy()) as loaded:
        result = analyze(loaded, AnalyzeOptions(static=static)).result
        forbidden = match_paths((e.path for e in loaded.rootfs.walk()), config.forbid_paths)
        if not static:
            result = _with_packages(result, loaded)
    if result.image.digest == expected:  # the image the key stands for (a tag may have moved)
        CACHE.put(key, result, forbidden, blobs=blobs)
    return CheckedImage(result, forbidden, cached=False)


def _checked(hit: tuple[AnalysisResult, Any]) -> CheckedImage:
    result, forbidden = hit
    return CheckedImage(result, sorted(str(p) for p in forbidden or []), cached=True)


def _with_packages(result: AnalysisResult, loaded: Any) -> AnalysisResult:
    """Installed packages without the closure (kept bytes 0), for forbid_packages and diffs."""
    from slim.analyzers.packages import package_summaries, read_packages

    return dataclasses.replace(
        result, packages=package_summaries(read_packages(loaded.rootfs), loaded.rootfs, set()))
