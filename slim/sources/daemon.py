"""docker-daemon:NAME[:TAG] — an image in the local Docker engine, via the Docker SDK.

`docker save` is streamed chunk by chunk into a temp file (never held in memory) and then read
as a docker-archive. The temp file belongs to the Image and goes away with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from slim.errors import SourceError
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
    def __init__(self, path: str, tmpdir: str) -> None:
        super().__init__(path)
        self.tmpdir = tmpdir

    def close(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class DaemonSource(Source):
    """Exports the image from the daemon with the SDK's streamed `get_image`."""

    def open(self, ref: ImageRef) -> StoreImage:
        from docker.errors import APIError, ImageNotFound

        client = docker_client()
        name = ref.location
        try:
            info = client.api.inspect_image(name)
        except ImageNotFound:
            raise SourceError(f"docker-daemon:{name}: no such image in the local daemon") from None
        except APIError as exc:
            raise SourceError(f"docker-daemon:{name}: {exc.explanation or exc}") from None
        tmpdir = tempfile.mkdtemp(prefix="slim-daemon-")
        path = os.path.join(tmpdir, "image.tar")
        try:
            with open(path, "wb") as out:
                for chunk in client.api.get_image(name, chunk_size=1 << 20):
                    out.write(chunk)
            store = _TempArchiveStore(path, tmpdir)
        except BaseException as exc:
            shutil.rmtree(tmpdir, ignore_errors=True)
            if isinstance(exc, APIError):
                raise SourceError(f"docker-daemon:{name}: save failed: {exc.explanation or exc}") from None
            raise
        image = open_docker_archive(ImageRef("docker-archive", path), store)
        image.ref = ref
        image.names = (ref.location,)
        image.digest = str(info.get("Id") or image.digest)  # the image ID = config digest
        return image
