"""Where images come from. One registry dict: transport name → Source class."""

from __future__ import annotations

from slim.errors import SourceError
from slim.model import ImageRef
from slim.sources.archive import DockerArchiveSource, OciArchiveSource, OciSource
from slim.sources.base import Image, Source, parse_ref
from slim.sources.daemon import DaemonSource, daemon_available
from slim.sources.directory import DirectorySource
from slim.sources.registry import RegistrySource

SOURCES: dict[str, type[Source]] = {
    "docker-archive": DockerArchiveSource,
    "oci": OciSource,
    "oci-archive": OciArchiveSource,
    "docker-daemon": DaemonSource,
    "docker": RegistrySource,
    "rootfs": DirectorySource,
}


def open_image(ref: ImageRef | str) -> Image:
    """Open an image reference. A bare name tries the local daemon, then the registry.

    Raises SourceError naming the reference when it cannot be opened.
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
    try:
        image = RegistrySource().open(ImageRef("docker", ref.location))
        image.ref = ref
        return image
    except SourceError as exc:
        errors.append(str(exc))
    raise SourceError(f"{ref.location}: image not found ({'; '.join(errors)})")


__all__ = ["SOURCES", "Image", "Source", "open_image", "parse_ref"]
