"""Image references, for inputs and outputs alike: one parser, skopeo's transport names.

Inputs (`slim analyze IMAGE`): `docker-archive:FILE[:NAME[:TAG]]` · `oci:DIR[:TAG]` ·
`oci-archive:FILE[:TAG]` · `docker-daemon:NAME[:TAG]` · `docker://REGISTRY/NAME[:TAG]` ·
`rootfs:DIR` · a bare path to a `.tar` (sniffed: docker-archive when it has manifest.json,
oci-archive when it has oci-layout) · a directory holding `oci-layout` · a bare `NAME[:TAG]`
(transport "auto": the local daemon, then a registry when the name looks like one).

Outputs (`slim build --output DEST`): `oci:DIR[:TAG]` · `oci-archive:FILE[:TAG]` ·
`docker-archive:FILE[:NAME[:TAG]]` · `docker://REGISTRY/NAME[:TAG]`.

As in skopeo, `oci:DIR:TAG` takes the TAG after the last ':' when it holds no '/', and
`docker-archive:FILE:NAME` splits at the first ':' after which FILE exists (inputs) or at the
first ':' after the file name's extension (outputs, whose file does not exist yet).
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass

from slim.errors import SourceError, UsageError

INPUT_TRANSPORTS = ("docker-archive", "oci-archive", "oci", "docker-daemon", "rootfs")
OUTPUT_TRANSPORTS = ("oci", "oci-archive", "docker-archive", "docker")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed image reference."""

    transport: str  # docker-archive | oci | oci-archive | docker-daemon | docker | rootfs | auto
    location: str  # path, directory or name (without the transport prefix)
    tag: str = ""  # oci:DIR:TAG reference name, docker-archive:FILE:NAME, or a name's tag

    def __str__(self) -> str:
        if self.transport == "docker":
            return f"docker://{self.location}"
        if self.transport == "auto":
            return self.location
        suffix = f":{self.tag}" if self.tag and self.transport in ("oci", "oci-archive") else ""
        return f"{self.transport}:{self.location}{suffix}"

    @property
    def is_file(self) -> bool:
        """Whether the location is a host file or directory (not a daemon or registry name)."""
        return self.transport in ("docker-archive", "oci-archive", "oci", "rootfs")


def _oci_tag(rest: str, must_exist: bool) -> tuple[str, str]:
    """(DIR, TAG) of `DIR[:TAG]`: the TAG follows the last ':' and holds no '/'."""
    loc, sep, tag = rest.rpartition(":")
    if sep and loc and "/" not in tag and not (must_exist and os.path.exists(rest)):
        return loc, tag
    return rest, ""


def parse_ref(text: str) -> ImageRef:
    """Parse an input image reference. Raises SourceError for an empty or malformed one."""
    text = text.strip()
    if not text:
        raise SourceError("image reference is empty")
    if text.startswith("docker://"):
        rest = text[len("docker://") :]
        if not rest:
            raise SourceError(f"{text}: missing a name after 'docker://'")
        return ImageRef("docker", rest)
    for transport in INPUT_TRANSPORTS:
        prefix = transport + ":"
        if not text.startswith(prefix):
            continue
        rest = text[len(prefix) :]
        if not rest:
            raise SourceError(f"{text}: missing location after '{prefix}'")
        if transport in ("oci", "oci-archive"):
            loc, tag = _oci_tag(rest, must_exist=True)
            return ImageRef(transport, loc, tag)
        if transport == "docker-archive" and not os.path.exists(rest):
            for i, ch in enumerate(rest):
                if ch == ":" and os.path.isfile(rest[:i]):
                    return ImageRef(transport, rest[:i], rest[i + 1 :])
        return ImageRef(transport, rest)
    if os.path.isfile(text):
        return ImageRef(archive_kind(text), text)
    if os.path.isdir(text):
        if os.path.exists(os.path.join(text, "oci-layout")):
            return ImageRef("oci", text)
        raise SourceError(f"{text}: a directory; use rootfs:{text} for a root filesystem")
    if text.endswith((".tar", ".tar.gz", ".tgz")) or text.startswith(("./", "../", "/")):
        raise SourceError(f"{text}: no such file")
    return ImageRef("auto", text)


def archive_kind(path: str) -> str:
    """docker-archive when the tar has manifest.json, oci-archive when it has oci-layout.

    Raises SourceError naming the file otherwise.
    """
    try:
        with tarfile.open(path, "r:") as tf:
            names = set()
            for member in tf:
                names.add(member.name.lstrip("./"))
                if "manifest.json" in names or "oci-layout" in names:
                    break
    except (tarfile.TarError, OSError) as exc:
        raise SourceError(f"{path}: not a readable image archive: {exc}") from None
    if "manifest.json" in names:
        return "docker-archive"
    if "oci-layout" in names:
        return "oci-archive"
    raise SourceError(f"{path}: neither a docker-archive (manifest.json) nor an OCI archive (oci-layout)")


@dataclass(frozen=True, slots=True)
class OutputRef:
    """Where `slim build` writes: a transport, a host path (or registry name) and a tag."""

    transport: str  # oci | oci-archive | docker-archive | docker
    location: str
    tag: str = ""  # oci ref.name / docker-archive NAME[:TAG] / registry tag, as given

    def __str__(self) -> str:
        if self.transport == "docker":
            return f"docker://{self.location}"
        return f"{self.transport}:{self.location}" + (f":{self.tag}" if self.tag else "")

    def with_location(self, location: str) -> OutputRef:
        return OutputRef(self.transport, location, self.tag)


def parse_output(text: str) -> OutputRef:
    """Parse an output reference. Raises UsageError naming the forms it accepts."""
    forms = "oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE[:NAME[:TAG]] or docker://REF"
    if text.startswith("docker://"):
        rest = text[len("docker://") :]
        if rest:
            return OutputRef("docker", rest)
    for transport in ("oci-archive", "docker-archive", "oci"):
        prefix = transport + ":"
        if not text.startswith(prefix) or len(text) == len(prefix):
            continue
        rest = text[len(prefix) :]
        if transport == "oci":
            loc, tag = _oci_tag(rest, must_exist=False)
            return OutputRef(transport, loc, tag)
        # FILE[:NAME[:TAG]]: the file name ends at the first ':' after its last '/'
        slash = rest.rfind("/", 0, rest.find(":") if ":" in rest else len(rest))
        colon = rest.find(":", slash + 1)
        if colon > 0:
            return OutputRef(transport, rest[:colon], rest[colon + 1 :])
        return OutputRef(transport, rest)
    raise UsageError(f"{text}: must be {forms}")


def split_name(name: str) -> tuple[str, str]:
    """("repo", "tag") of "repo:tag"; the tag is "" when absent. A registry port is not a tag
    ("localhost:5000/app" is a repository); a digest ("app@sha256:…") stays in the repo."""
    if "@" in name:
        return name, ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, ""


# Docker's reference grammar (github.com/distribution/reference, regexp.go): NAME[:TAG]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
           r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_DOCKER_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?")
MAX_NAME = 255  # characters of the repository part


def image_name_problem(name: str) -> str:
    """Why `name` is no image name Docker accepts as NAME[:TAG] ("" when it is one): `docker
    load` refuses an archive whose RepoTags hold one ("invalid reference format") after it has
    stored the image, which then stays behind unnamed."""
    if not _DOCKER_NAME.fullmatch(name):
        return ("not an image name (lowercase letters, digits and . _ - separators, an optional "
                "registry host first, an optional :TAG of at most 128 letters, digits, . _ -)")
    if len(split_name(name)[0]) > MAX_NAME:
        return f"the repository name is longer than {MAX_NAME} characters"
    return ""


def looks_like_registry(name: str) -> bool:
    """Whether a bare NAME names a registry explicitly (its first component has a '.' or a
    ':', or is `localhost`), the Docker rule for telling `registry/app` from `user/app`."""
    first, sep, _ = name.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


__all__ = ["ImageRef", "OutputRef", "archive_kind", "looks_like_registry", "parse_output",
           "parse_ref", "split_name"]
