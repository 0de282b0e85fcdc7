"""Rebuild the committed sample images: `python sample_images/build.py [--out DIR] [NAME…]`.

Each recipe in recipes/ (one module per image) returns layers and a config; this script writes
them with slim.emitters.imagewriter as DIR/<name>/<name>.docker.tar and DIR/<name>/<name>.oci/,
and records every digest, plus the host inputs used (library hashes, package versions), in
DIR/digests.json. Output is deterministic: the same inputs give the same bytes, so a rebuild on
an identical host reproduces the committed digests (tests/unit/test_sample_images.py checks it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

from recipes import MODULES  # noqa: E402
from recipes._common import BuildContext, Layer, RecipeError  # noqa: E402

from slim.emitters.imagewriter import LayerBlob, LayerTarWriter, compress_layer, write_image  # noqa: E402


def write_layer(layer: Layer, tar_path: str) -> None:
    with open(tar_path, "wb") as out, LayerTarWriter(out) as writer:
        for path in sorted(layer.entries):
            entry, data = layer.entries[path]
            stream = layer.open_data(data)
            try:
                writer.add(entry, stream)
            finally:
                if stream is not None:
                    stream.close()
        for path in layer.whiteouts:
            writer.add_whiteout(path)
        for path in layer.opaques:
            writer.add_opaque(path)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_one(module_name: str, out: str, ctx: BuildContext) -> dict[str, Any]:
    mod = importlib.import_module(f"recipes.{module_name}")
    recipe = mod.build(ctx)
    work = ctx.scratch(f"layers-{mod.NAME}")
    blobs: list[LayerBlob] = []
    for i, layer in enumerate(recipe.layers):
        tar_path = os.path.join(work, f"layer{i}.tar")
        write_layer(layer, tar_path)
        blobs.append(compress_layer(tar_path, os.path.join(work, "blobs"), layer.compression))
    dest = os.path.join(out, mod.NAME)
    os.makedirs(dest, exist_ok=True)
    config = recipe.image_config()
    docker_tar = os.path.join(dest, f"{mod.NAME}.docker.tar")
    digest = write_image(f"docker-archive:{docker_tar}", blobs, config, tag=recipe.tag, docker_form=mod.DOCKER_FORM)
    digest_oci = write_image(f"oci:{os.path.join(dest, mod.NAME + '.oci')}", blobs, config, tag=recipe.tag)
    assert digest == digest_oci, "one config, one digest"
    return {
        "config_digest": digest,
        "docker_form": mod.DOCKER_FORM,
        "docker_tar_sha256": sha256_file(docker_tar),
        "layers": [
            {"digest": b.digest, "diff_id": b.diff_id, "media_type": b.media_type, "size": b.size} for b in blobs
        ],
        "tag": recipe.tag,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE, help="output directory (default: sample_images/)")
    parser.add_argument("names", nargs="*", help="images to build (default: all)")
    args = parser.parse_args(argv)
    by_name = {importlib.import_module(f"recipes.{m}").NAME: m for m in MODULES}
    unknown = sorted(set(args.names) - set(by_name))
    if unknown:
        parser.error(f"unknown image(s): {', '.join(unknown)} (known: {', '.join(sorted(by_name))})")
    names = args.names or sorted(by_name)
    digests_path = os.path.join(args.out, "digests.json")
    doc: dict[str, Any] = {"images": {}, "inputs": {}}
    if args.names and os.path.exists(digests_path):
        with open(digests_path) as f:
            doc = json.load(f)
    with tempfile.TemporaryDirectory(prefix="slim-samples-") as work:
        ctx = BuildContext(work)
        for name in names:
            try:
                doc["images"][name] = build_one(by_name[name], args.out, ctx)
            except RecipeError as exc:
                print(f"{name}: cannot build: {exc}", file=sys.stderr)
                return 1
            print(f"{name}: {doc['images'][name]['config_digest']}")
        doc["inputs"].update(ctx.inputs)
    os.makedirs(args.out, exist_ok=True)
    with open(digests_path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
