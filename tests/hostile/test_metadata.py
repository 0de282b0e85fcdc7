"""Hostile metadata: index.json, manifests, image configs, manifest.json and the rootfs sidecar
with wrong types, deep nesting, bad digests and numbers no parser should trust. Each must be a
one-line SourceError naming the document and the field, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile import forge
from tests.hostile.forge import APP_CONFIG, app_files
from tests.hostile.harness import Sandbox, baseline, check, run_slim

LAYER = forge.tar(app_files())


def _set(path: str, value: Any) -> Callable[[Any], Any]:
    """An edit that sets a dotted path (list indexes as numbers) in a JSON document."""

    def edit(doc: Any) -> Any:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return doc

    return edit


def _oci(**kw: Any) -> Callable[[Sandbox], str]:
    return lambda box: f"oci:{forge.oci(box.inputs / 'oci', [LAYER], APP_CONFIG, **kw)}"


def _cfg(path: str, value: Any) -> Callable[[Sandbox], str]:
    return _oci(edit_config=_set(path, value))


def _archive(**kw: Any) -> Callable[[Sandbox], str]:
    return lambda box: str(forge.docker_archive(box.inputs / "img.tar", [LAYER], APP_CONFIG, **kw))


def _nested_index(depth: int) -> Callable[[Sandbox], str]:
    """An index whose only entry is an index, `depth` times."""

    def make(box: Sandbox) -> str:
        dest = forge.oci(box.inputs / "oci", [LAYER], APP_CONFIG)
        index = json.loads((dest / "index.json").read_text())
        for _ in range(depth):
            raw = json.dumps(index).encode()
            digest = forge.sha(raw)
            (dest / "blobs/sha256" / digest.split(":")[1]).write_bytes(raw)
            index = {"schemaVersion": 2, "manifests": [
                {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                 "size": len(raw)}]}
        (dest / "index.json").write_text(json.dumps(index))
        return f"oci:{dest}"

    return make


def _sidecar(raw: bytes) -> Callable[[Sandbox], str]:
    def make(box: Sandbox) -> str:
        root = forge.rootfs(box.inputs / "root", {"/bin/app": bytes(forge.elf_header())})
        (root / ".slim-config.json").write_bytes(raw)
        return f"rootfs:{root}"

    return make


DEEP = b"[" * 100_000 + b"]" * 100_000
CASES: list[tuple[str, Callable[[Sandbox], str], str]] = [
    # index.json
    ("index-array", _oci(edit_index=lambda d: [d]), r"index\.json: expected an object, found an array"),
    ("index-manifests-object", _oci(edit_index=_set("manifests", {})), r"index\.json: manifests: expected an array"),
    ("index-entry-string", _oci(edit_index=_set("manifests.0", "x")), r"manifests\[0\]: expected an object"),
    ("index-digest-number", _oci(edit_index=_set("manifests.0.digest", 7)), r"manifests\[0\]\.digest: expected a string"),
    ("index-platform-string", _oci(edit_index=_set("manifests.0.platform", "linux")), r"manifests\[0\]\.platform: expected an object"),
    ("index-platform-os-number", _oci(edit_index=_set("manifests.0.platform", {"os": 1})), r"platform\.os: expected a string"),
    ("index-deep", _oci(raw_index=DEEP), r"index\.json: JSON nested more than 64"),
    ("index-not-utf8", _oci(raw_index=b'{"manifests": "\xff\xfe"}'), r"index\.json: invalid JSON"),
    ("index-huge-number", _oci(raw_index=b'{"schemaVersion": ' + b"9" * 5000 + b"}"), r"index\.json: invalid JSON"),
    ("index-chain", _nested_index(6), r"image index nesting too deep"),
    # the manifest
    ("manifest-array", _oci(edit_manifest=lambda m: [m]), r"manifest sha256:[0-9a-f]+: expected an object"),
    ("manifest-config-string", _oci(edit_manifest=_set("config", "cfg")), r"manifest sha256:[0-9a-f]+: config: expected an object"),
    ("manifest-config-digest-list", _oci(edit_manifest=_set("config.digest", ["a"])), r"config\.digest: expected a string"),
    ("manifest-layers-object", _oci(edit_manifest=_set("layers", {"a": 1})), r"layers: expected an array"),
    ("manifest-layer-string", _oci(edit_manifest=_set("layers.0", "blob")), r"layers\[0\]: expected an object"),
    ("manifest-layer-size-string", _oci(edit_manifest=_set("layers.0.size", "abc")), r"layers\[0\]\.size: expected a non-negative integer"),
    ("manifest-layer-size-negative", _oci(edit_manifest=_set("layers.0.size", -1)), r"layers\[0\]\.size: expected a non-negative integer"),
    ("manifest-layer-size-bool", _oci(edit_manifest=_set("layers.0.size", True)), r"layers\[0\]\.size"),
    ("manifest-layer-digest-md5", _oci(edit_manifest=_set("layers.0.digest", "md5:" + "0" * 32)), r"layers\[0\]: invalid digest"),
    ("manifest-layer-digest-upper", _oci(edit_manifest=_set("layers.0.digest", "sha256:" + "A" * 64)), r"invalid digest"),
    ("manifest-layer-digest-dotdot", _oci(edit_manifest=_set("layers.0.digest", "sha256:../../../etc/passwd")), r"invalid digest"),
    ("manifest-layer-mediatype-list", _oci(edit_manifest=_set("layers.0.mediaType", ["x"])), r"layers\[0\]\.mediaType: expected a string"),
    # the image config
    ("config-array", _oci(edit_config=lambda c: [c]), r"image config: expected an object"),
    ("config-config-string", _cfg("config", "x"), r"config: expected an object, found a string"),
    ("config-env-object", _cfg("config.Env", {"A": "1"}), r"config\.Env: expected an array"),
    ("config-cmd-numbers", _cfg("config.Cmd", [1, 2]), r"config\.Cmd\[0\]: expected a string"),
    ("config-entrypoint-number", _cfg("config.Entrypoint", 5), r"config\.Entrypoint: expected an array"),
    ("config-workdir-list", _cfg("config.WorkingDir", ["/"]), r"config\.WorkingDir: expected a string"),
    ("config-user-number", _cfg("config.User", 0), r"config\.User: expected a string"),
    ("config-port-unicode-digit", _cfg("config.ExposedPorts", {"²/tcp": {}}), r"ExposedPorts '²/tcp': not a port"),
    ("config-port-range", _cfg("config.ExposedPorts", {"70000/tcp": {}}), r"ExposedPorts '70000/tcp': not a port"),
    ("config-port-fullwidth", _cfg("config.ExposedPorts", {"\uff18\uff10/tcp": {}}), "ExposedPorts '\uff18\uff10/tcp': not a port"),
    ("config-ports-list", _cfg("config.ExposedPorts", ["80/tcp"]), r"config\.ExposedPorts: expected an object"),
    ("config-labels-list", _cfg("config.Labels", ["a"]), r"config\.Labels: expected an object"),
    ("config-label-number", _cfg("config.Labels", {"a": 1}), r"config\.Labels\['a'\]: expected a string"),
    ("config-healthcheck-string", _cfg("config.Healthcheck", "curl"), r"config\.Healthcheck: expected an object"),
    ("config-history-object", _cfg("history", {"a": 1}), r"history: expected an array"),
    ("config-history-entry-number", _cfg("history", [1]), r"history\[0\]: expected an object"),
    ("config-rootfs-string", _cfg("rootfs", "layers"), r"rootfs: expected an object"),
    ("config-diff-ids-number", _cfg("rootfs", {"diff_ids": 3}), r"rootfs\.diff_ids: expected an array"),
    ("config-diff-id-md5", _cfg("rootfs", {"diff_ids": ["md5:" + "0" * 32]}), r"diff_id 'md5:0+': unsupported digest algorithm"),
    ("config-os-list", _cfg("os", ["linux"]), r"os: expected a string"),
    ("config-deep-healthcheck", _oci(raw_config=b'{"config": {"Healthcheck": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}}"),
     r"config: JSON nested more than 64"),
    ("config-not-json", _oci(raw_config=b"\x00\x01 not json"), r"config: invalid JSON"),
    # docker-archive manifest.json
    ("archive-manifest-object", _archive(edit_manifest=lambda m: m[0]), r"manifest\.json: expected an array"),
    ("archive-manifest-empty", _archive(edit_manifest=lambda m: []), r"manifest\.json lists no images"),
    ("archive-entry-string", _archive(edit_manifest=lambda m: ["x"]), r"manifest\.json\[0\]: expected an object"),
    ("archive-config-number", _archive(edit_manifest=_set("0.Config", 5)), r"manifest\.json: Config: expected a string"),
    ("archive-config-missing", _archive(edit_manifest=_set("0.Config", "../../../etc/passwd")), r"missing"),
    ("archive-repotags-number", _archive(edit_manifest=_set("0.RepoTags", 5)), r"RepoTags: expected an array"),
    ("archive-layers-object", _archive(edit_manifest=_set("0.Layers", {"a": "b"})), r"Layers: expected an array"),
    ("archive-layer-number", _archive(edit_manifest=_set("0.Layers", [1])), r"Layers\[0\]: expected a string"),
    ("archive-manifest-deep", _archive(raw_manifest=DEEP), r"manifest\.json: JSON nested more than 64"),
    # rootfs: sidecar
    ("sidecar-array", _sidecar(b"[1, 2]"), r"image config: expected an object"),
    ("sidecar-cmd-object", _sidecar(b'{"config": {"Cmd": {"a": 1}}}'), r"config\.Cmd: expected an array"),
]


@pytest.mark.parametrize("make, error", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_metadata_is_one_line_naming_the_field(box: Sandbox, make, error: str) -> None:
    ref = make(box)
    report = box.out / "report.json"
    before = baseline(box)
    run = run_slim(box, "analyze", ref, "-f", "json", "-o", str(report))
    check(box, run, rc=3, error=error, before=before)
    assert not Path(report).exists()
