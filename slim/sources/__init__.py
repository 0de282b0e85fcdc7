"""Where images come from. One registry dict: transport name → Source class."""

from __future__ import annotations

from slim.errors import SourceError
from slim.refs import ImageRef, looks_like_registry, parse_ref
from slim.sources.archive import DockerArchiveSource, OciArchiveSource, OciSource
from slim.sources.base import BlobImage, Image, Source
from slim.sources.daemon import DaemonSource, daemon_available
from slim.sources.directory import DirectoryImage, DirectorySource
from slim.sources.registry import RegistrySource

SOURCES: dict[str, type[Source]] = {
    "docker-archive": DockerArchiveSource,
    "oci": OciSource,
    "oci-archive": OciArchiveSource,
    "docker-daemon": DaemonSource,
    "docker": RegistrySource,
    "rootfs": DirectorySource,
}


def open_image(ref: ImageRef | str, *, pull: bool = False) -> Image:
    """Open an image reference. Raises SourceError naming the reference when it cannot.

    A bare NAME[:TAG] is looked up in the local Docker daemon; a registry is asked only when
    the name names one explicitly (`registry.example/app`, `localhost:5000/app`) or with
    `pull`, so a typo never becomes a download from Docker Hub.
    """
    if isinstance(ref, str):
        ref = parse_ref(ref)
    if ref.transport != "auto":
        return SOURCES[ref.transport]().open(ref)
    errors = []
    if daemon_available():
        try:
            image = DaemonSource().open(ImageRef("docker-daemon", ref.location))
            image.ref = ref
            return image
        except SourceError as exc:
            errors.append(str(exc))
    else:
        errors.append("no Docker daemon answers")
    if pull or looks_like_registry(ref.location):
        try:
            image = RegistrySource().open(ImageRef("docker", ref.location))
            image.ref = ref
            return image
        except SourceError as exc:
            errors.append(str(exc))
    else:
        errors.append("not a registry reference (use docker://REF or --pull to pull it)")
    raise SourceError(f"{ref.location}: no such image or file ({'; '.join(errors)})")


def daemon_first(ref: ImageRef) -> bool:
    """Whether open_image looks `ref` up in the local Docker daemon first: `docker-daemon:NAME`,
    or a bare NAME[:TAG] while a daemon answers. The result caches then ask the daemon what the
    name stands for (`docker inspect`) before saving the image."""
    return ref.transport == "docker-daemon" or (ref.transport == "auto" and daemon_available())


__all__ = ["SOURCES", "BlobImage", "DirectoryImage", "Image", "Source", "daemon_first", "open_image"]
