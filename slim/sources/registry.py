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


MAX_MESSAGE = 200


def skopeo_message(output: str, returncode: int) -> str:
    """One short line from skopeo's log: the `msg="…"` of its last line (logrus format), at
    most MAX_MESSAGE characters."""
    lines = output.strip().splitlines()
    if not lines:
        return f"skopeo exit {returncode}"
    last = lines[-1]
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', last)
    text = m.group(1).replace('\\"', '"') if m else last
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


class RegistrySource(Source):
    """Copies a registry image into the cache with `skopeo copy` and opens it as OCI."""

    def __init__(self, tls_verify: bool | None = None) -> None:
        self.tls_verify = tls_verify

    def open(self, ref: ImageRef) -> StoreImage:
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise SourceError(f"{ref}: skopeo is not installed (apt-get install skopeo)")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", ref.location)
        existed = os.path.isdir(os.path.join(str(slim_cache_dir("registry")), safe))
        dest = cache_dir(safe)
        try:
            return self._copy(skopeo, ref, dest)
        except BaseException:
            if not existed:  # a failed first pull leaves nothing behind in the cache
                shutil.rmtree(dest, ignore_errors=True)
            raise

    def _copy(self, skopeo: str, ref: ImageRef, dest: str) -> StoreImage:
        """skopeo copy into `dest` and open it. Raises SourceError."""
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
            raise SourceError(f"{ref}: {skopeo_message(proc.stderr or proc.stdout, proc.returncode)}")
        image = open_oci(ImageRef("oci", dest, "slim"), DirStore(dest))
        image.ref = ref
        image.names = (ref.location,)
        return image
