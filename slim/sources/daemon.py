"""docker-daemon:NAME[:TAG] — an image in the local Docker engine, via the Docker SDK.

`docker save` of the image's ID (what `docker inspect` of the name said, so a tag moved
meanwhile changes nothing) is streamed chunk by chunk into a temp file (never held in memory)
and then read as a docker-archive. The temp file has no name (it is reached as
/proc/self/fd/N), so it goes away with the Image, or with the process however it ends: a save
killed half-way, even by SIGKILL, leaves nothing in TMPDIR. Zero runs are written as holes
(slim.outputs.SparseWriter).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO

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


@dataclass(frozen=True)
class DaemonImageId:
    """A daemon image's content address, from `docker inspect` alone (no save): its ID (the
    digest of its config, which names every layer's diff_id; with the containerd image store,
    of its manifest) and its layers' diff_ids. The daemon computed both and holds the layers
    by them, so a result cached under them stands for the image's content (result_cache)."""

    ref: ImageRef
    digest: str
    diff_ids: tuple[str, ...]


def daemon_image_id(ref: ImageRef) -> DaemonImageId:
    """Ask the daemon what `ref` names now. Raises SourceError."""
    info = _inspect(docker_client(), ref.location)
    layers = (info.get("RootFS") or {}).get("Layers") or []
    image_id = info.get("Id")
    if not isinstance(image_id, str) or not isinstance(layers, list) \
            or not all(isinstance(x, str) for x in layers):
        raise SourceError(f"docker-daemon:{ref.location}: the daemon's description of the image is malformed")
    return DaemonImageId(ref, image_id, tuple(layers))


def _inspect(client: Any, name: str) -> dict[str, Any]:
    from docker.errors import APIError, ImageNotFound

    label = f"docker-daemon:{name}"
    try:
        info = client.api.inspect_image(name)
    except ImageNotFound:
        raise SourceError(f"{label}: no such image in the local daemon") from None
    except APIError as exc:
        raise SourceError(f"{label}: {exc.explanation or exc}") from None
    if not isinstance(info, dict):
        raise SourceError(f"{label}: the daemon's description of the image is malformed")
    return info


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
        from docker.errors import DockerException
        from requests import RequestException

        client = docker_client()
        name = ref.location
        label = f"docker-daemon:{name}"
        info = _inspect(client, name)
        image_id = info.get("Id")
        if not isinstance(image_id, str) or not image_id:
            raise SourceError(f"{label}: the daemon gave the image no ID")
        if not os.path.isdir("/proc/self/fd"):
            raise SourceError(f"{label}: /proc is not mounted; cannot hold the saved image")
        tmp = tempfile.TemporaryFile(prefix="slim-daemon-")  # noqa: SIM115 - owned by the store
        try:
            writer = SparseWriter(tmp.fileno())
            for chunk in client.api.get_image(image_id, chunk_size=1 << 20):
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
        image.digest = image_id  # the image ID = config digest
        return image
