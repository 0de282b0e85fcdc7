"""The analysis behind `slim check`, cached so a second check of an unchanged image is fast.

An entry is keyed by the image ID (config digest), the ordered layer digests, the slim version and
the budget configuration's hash; it holds the AnalysisResult (plain JSON, never pickle: a cache
file is data, not code) plus the paths that matched `forbid_paths`. On a hit the layers are
hashed, never parsed. Images without a content
address (`rootfs:` directories) are never cached: their files can change without a digest saying so.

A hit is used only after the stored layer blobs hash to their digests (`BlobImage.verify_blobs`):
a cache entry stands for content, never for names an archive chose. Location: slim.cache, kind
`check`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from slim import __version__
from slim.budget import BudgetConfig, match_paths
from slim.cache import JsonStore
from slim.errors import LayerError, SourceError
from slim.result import AnalysisResult, result_from_plain, to_plain
from slim.sources import BlobImage

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
MAX_ENTRIES = 256  # oldest entries beyond this are removed on write


@dataclass(frozen=True)
class CheckedImage:
    """What `slim check` needs from one image."""

    result: AnalysisResult
    forbidden_paths: list[str]
    cached: bool


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


# -- the cached check ------------------------------------------------------------------------
STORE = JsonStore("check", CACHE_FORMAT, max_entries=MAX_ENTRIES)


def _read_entry(key: str) -> tuple[AnalysisResult, list[str]] | None:
    data = STORE.get(key)
    if data is None:
        return None
    try:
        return result_from_plain(data["result"]), sorted(str(p) for p in data["forbidden_paths"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.info("check cache %s: ignoring a broken entry: %s", key, exc)
        return None


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
    hit = _read_entry(key) if use_cache and key else None
    if hit is not None and _blobs_are_what_they_claim(image):
        image.close()
        result, forbidden = hit
        log.info("%s: check cache hit (%s)", reference, key)
        result = dataclasses.replace(
            result, image=dataclasses.replace(result.image, reference=str(image.ref)))
        return CheckedImage(result, forbidden, cached=True)
    from slim.image import load
    from slim.pipeline import AnalyzeOptions, analyze, capture_policy

    with load(image, capture=capture_policy()) as loaded:
        result = analyze(loaded, AnalyzeOptions(static=static)).result
        forbidden = match_paths((e.path for e in loaded.rootfs.walk()), config.forbid_paths)
        if not static:
            result = _with_packages(result, loaded)
    if key:
        STORE.put(key, {"result": to_plain(result), "forbidden_paths": forbidden})
    return CheckedImage(result, forbidden, cached=False)


def _blobs_are_what_they_claim(image: Any) -> bool:
    """A cache hit stands for the layers' content: hash the stored blobs (cheap next to
    parsing them) so a tampered archive reusing an analyzed image's digests is a miss, and
    its reading then fails with the mismatch."""
    if not isinstance(image, BlobImage):
        return False
    try:
        image.verify_blobs()
    except (LayerError, SourceError, OSError) as exc:
        log.info("check cache: not used: %s", exc)
        return False
    return True


def _with_packages(result: AnalysisResult, loaded: Any) -> AnalysisResult:
    """Installed packages without the closure (kept bytes 0), for forbid_packages and diffs."""
    from slim.analyzers.packages import package_summaries, read_packages

    return dataclasses.replace(
        result, packages=package_summaries(read_packages(loaded.rootfs), loaded.rootfs, set()))
