"""docker://REGISTRY/NAME:TAG — pulled with skopeo into a cache as an OCI layout.

skopeo does the registry protocol, auth and retries; we read the layout it writes. The cache is
`$XDG_CACHE_HOME/slim/registry/<name>` and reused when the registry's manifest digest is unchanged
(skopeo copies only missing blobs into an existing layout).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from slim.cache import cache_dir as slim_cache_dir
from slim.errors import SourceError
from slim.refs import ImageRef
from slim.sources.archive import DirStore, StoreImage, open_oci
from slim.sources.base import Source


def cache_dir(*parts: str) -> str:
    path = os.path.join(str(slim_cache_dir("registry")), *parts)
    os.makedirs(path, exist_ok=True)
    return path


class RegistrySource(Source):
    """Copies a registry image into the cache with `skopeo copy` and opens it as OCI."""

    def __init__(self, tls_verify: bool | None = None) -> None:
        self.tls_verify = tls_verify

    def open(self, ref: ImageRef) -> StoreImage:
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise SourceError(f"{ref}: skopeo is not installed (apt-get install skopeo)")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", ref.location)
        dest = cache_dir(safe)
        cmd = [skopeo, "copy", "--quiet"]
        tls = self.tls_verify
        if tls is None:
            tls = os.environ.get("SLIM_REGISTRY_TLS_VERIFY", "true").lower() not in ("0", "false", "no")
        if not tls:
            cmd.append("--src-tls-verify=false")
        cmd += [f"docker://{ref.location}", f"oci:{dest}:slim"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        except subprocess.TimeoutExpired:
            raise SourceError(f"{ref}: skopeo copy timed out") from None
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            msg = lines[-1] if lines else f"exit {proc.returncode}"
            raise SourceError(f"{ref}: {msg}")
        image = open_oci(ImageRef("oci", dest, "slim"), DirStore(dest))
        image.ref = ref
        image.names = (ref.location,)
        return image
