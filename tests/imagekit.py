"""Tiny, explicit image builders for tests: layer tars from member specs, OCI layouts and
docker-archives around them. Deliberately independent of slim's own writer so the readers are
tested against a second implementation.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class M:
    """One tar member: kind f(ile) d(ir) l(symlink) h(ardlink)."""

    name: str
    kind: str = "f"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644


def layer_tar(members: list[M]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            ti = tarfile.TarInfo(m.name)
            ti.mode = m.mode
            if m.kind == "f":
                ti.size = len(m.data)
                tf.addfile(ti, io.BytesIO(m.data))
                continue
            if m.kind == "d":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            elif m.kind == "l":
                ti.type = tarfile.SYMTYPE
                ti.linkname = m.link
            elif m.kind == "h":
                ti.type = tarfile.LNKTYPE
                ti.linkname = m.link
            tf.addfile(ti)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _config(tars: list[bytes], config: dict | None) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in tars]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
    }
    return json.dumps(doc, sort_keys=True).encode()


def write_oci(dest: str, tars: list[bytes], config: dict | None = None, *, compress: bool = True,
              platform: dict | None = None) -> str:
    """Write an OCI layout; returns the config digest."""
    blobs = os.path.join(dest, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data: bytes) -> str:
        d = sha(data)
        with open(os.path.join(blobs, d.split(":")[1]), "wb") as f:
            f.write(data)
        return d

    layers = []
    for t in tars:
        blob = gzip.compress(t, mtime=0) if compress else t
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(blob), "size": len(blob)})
    cfg = _config(tars, config)
    cfg_d = put(cfg)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": len(cfg)},
        "layers": layers,
    }).encode()
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest), "size": len(manifest)}
    if platform:
        desc["platform"] = platform
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [desc]}, f)
    with open(os.path.join(dest, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return cfg_d


def write_docker_archive(dest: str, tars: list[bytes], config: dict | None = None,
                         *, compress: bool = False, corrupt: dict | None = None,
                         repo_tags: list[str] | None = None) -> str:
    """Write a legacy `docker save` tar; returns the config digest."""
    cfg = _config(tars, config)
    cfg_name = sha(cfg).split(":")[1] + ".json"
    names = []
    with tarfile.open(dest, "w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

        add(cfg_name, cfg)
        for i, t in enumerate(tars):
            name = f"layer{i}/layer.tar"
            blob = gzip.compress(t, mtime=0) if compress else t
            if corrupt and i in corrupt:
                blob = corrupt[i](blob)
            add(name, blob)
            names.append(name)
        manifest = [{"Config": cfg_name, "RepoTags": repo_tags if repo_tags is not None else ["test:latest"],
                     "Layers": names}]
        add("manifest.json", json.dumps(manifest).encode())
    return sha(cfg)


def write_tree(root: Path, files: dict[str, str | bytes], links: dict[str, str] | None = None,
               config: dict | None = None) -> None:
    """A `rootfs:` tree: `files` (image path → contents) and symlinks under `root`, plus the
    config sidecar. Programs (anything in a bin/ or sbin/ directory, ELF files, `#!` scripts)
    are made executable, as execvp needs them to be."""
    for path, data in files.items():
        host = root / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        raw = data if isinstance(data, bytes) else data.encode()
        host.write_bytes(raw)
        if "/bin/" in path or raw.startswith((b"\x7fELF", b"#!")):
            host.chmod(0o755)
    for path, target in (links or {}).items():
        host = root / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, host)
    if config is not None:
        (root / ".slim-config.json").write_text(json.dumps({"config": config}))
