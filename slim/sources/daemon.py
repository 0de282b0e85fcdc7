"""docker-daemon:NAME[:TAG] — an image in the local Docker engine, via the Docker SDK.

`docker save` is streamed chunk by chunk into a temp file (never held in memory) and then read
as a docker-archive. The temp file has no name (it is reached as /proc/self/fd/N), so it goes
away with the Image, or with the process however it ends: a save killed half-way, even by
SIGKILL, leaves nothing in TMPDIR. Zero runs are written as holes (slim.outputs.SparseWriter).
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO

from slim.errors import SourceError
from slim.outputs import SparseWriter
from slim.refs import ImageRef
from slim.sources.archive import StoreImage, TarStore, open_docker_archive
from slim.sources.base import Source


def docker_client(timeout: int = 120):
    """A Docker SDK client, or SourceError when no daemon answers."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise SourceError(f"docker SDK not installed: {exc}") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise SourceError(f"docker daemon: not reachable ({exc.__class__.__name__})") from None
    return client


def daemon_available() -> bool:
    try:
        docker_client(timeout=5)
    except SourceError:
        return False
    return True


class _TempArchiveStore(TarStore):
    """A docker-archive in an unnamed temporary file, owned (and closed) by this store."""

    def __init__(self, tmp: BinaryIO, label: str) -> None:
        super().__init__(f"/proc/self/fd/{tmp.fileno()}", label)
        self.tmp = tmp

    def close(self) -> None:
        self.tmp.close()


class DaemonSource(Source):
    """Exports the image from the daemon with the SDK's streamed `get_image`."""

    def open(self, ref: ImageRef) -> StoreImage:
        from docker.errors import APIError, DockerException, ImageNotFound
        from requests import RequestException

        client = docker_client()
        name = ref.location
        label = f"docker-daemon:{name}"
        try:
            info = client.api.inspect_image(name)
        except ImageNotFound:
            raise SourceError(f"{label}: no such image in the local daemon") from None
        except APIError as exc:
            raise SourceError(f"{label}: {exc.explanation or exc}") from None
        if not os.path.isdir("/proc/self/fd"):
            raise SourceError(f"{label}: /proc is not mounted; cannot hold the saved image")
        tmp = tempfile.TemporaryFile(prefix="slim-daemon-")  # noqa: SIM115 - owned by the store
        try:
            writer = SparseWriter(tmp.fileno())
            for chunk in client.api.get_image(name, chunk_size=1 << 20):
                writer.write(chunk)
            writer.close()
            store = _TempArchiveStore(tmp, label)
        except BaseException as exc:
            tmp.close()
            if isinstance(exc, DockerException | RequestException):
                raise SourceError(f"{label}: save failed: {exc}") from None
            raise
        try:
            image = open_docker_archive(ImageRef("docker-daemon", name), store)
        except BaseException:
            store.close()
            raise
        image.ref = ref
        image.names = (ref.location,)
        image.digest = str(info.get("Id") or image.digest)  # the image ID = config digest
        return image
