"""SBOMs of an image's packages: CycloneDX 1.6 (cyclonedx-python-lib) or SPDX 2.3 JSON.

Input is the output model (`result.PackageSummary`, as syft separates its output formats from
its catalogers): every OS and language package with its package URL and what of it slim keeps.
A document describes one image, named by `SbomSubject`:

* the minimal image `slim build` writes (`minimal=True`): only packages that keep a file;
  each carries its kept and removed file counts and bytes relative to the source image;
* an image as analyzed (`slim analyze --sbom`): every package the image has; when a keep set
  was computed, the same counts say what a `slim build` would keep.

Per-package facts are CycloneDX `properties` (names `slim:…`) or SPDX package `annotations`
(type OTHER, comment "slim: status=… kept-files=…"). Documents are deterministic: the serial
number / namespace is a UUID derived from the content, the timestamp is SOURCE_DATE_EPOCH, else
the image's `created`, else the Unix epoch (never the clock).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slim import __version__
from slim.errors import EmitError
from slim.result import PackageSummary

CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPDX_MEDIA_TYPE = "application/spdx+json"
TOOL = f"slim-{__version__}"


@dataclass(frozen=True)
class SbomSubject:
    """The image a document describes."""

    reference: str
    digest: str  # the source image's ID (config digest)
    architecture: str = ""
    os: str = ""
    created: str = ""  # the image config's RFC 3339 `created`, "" when absent
    minimal: bool = True  # the minimal image slim writes (else: the image as analyzed)

    @classmethod
    def of(cls, loaded: Any, *, minimal: bool) -> SbomSubject:
        """The subject for a loaded image (slim.image.LoadedImage)."""
        image = loaded.image
        raw = image.raw_config or {}
        return cls(str(image.ref), image.digest, str(raw.get("architecture", image.config.architecture)),
                   str(raw.get("os", image.config.os)), str(raw.get("created") or ""), minimal)

    @property
    def timestamp(self) -> datetime.datetime:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
        if epoch.isascii() and epoch.isdigit() and len(epoch) < 12:
            return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
        try:
            when = datetime.datetime.fromisoformat(self.created.replace("Z", "+00:00"))
            return when.astimezone(datetime.UTC).replace(microsecond=0)
        except ValueError:
            return datetime.datetime.fromtimestamp(0, datetime.UTC)

    @property
    def title(self) -> str:
        return f"{self.reference} (slim minimal image)" if self.minimal else self.reference


@dataclass(frozen=True)
class SbomFormat:
    """One SBOM format: its `--sbom` name, media type (the referrer's artifactType), file
    suffix and renderer."""

    name: str
    media_type: str
    suffix: str
    render: Callable[[Sequence[PackageSummary], SbomSubject], bytes]


def described(packages: Sequence[PackageSummary], subject: SbomSubject) -> list[PackageSummary]:
    """The packages a document lists, sorted: for a minimal image those that keep a file."""
    chosen = [p for p in packages if not subject.minimal or p.status in ("kept", "partly-kept")]
    return sorted(chosen, key=lambda p: (p.manager, p.name, p.version, p.arch, p.purl, p.status,
                                         p.file_count, p.kept_files, p.size_bytes, p.kept_bytes))


def slim_facts(p: PackageSummary) -> list[tuple[str, str]]:
    """(name, value) facts about one package, in a fixed order."""
    facts = [("slim:manager", p.manager), ("slim:files", str(p.file_count)),
             ("slim:bytes", str(p.size_bytes))]
    if p.status:
        facts += [("slim:status", p.status),
                  ("slim:kept-files", str(p.kept_files)),
                  ("slim:kept-bytes", str(p.kept_bytes)),
                  ("slim:removed-files", str(p.file_count - p.kept_files)),
                  ("slim:removed-bytes", str(p.size_bytes - p.kept_bytes))]
    return facts


def _describes(subject: SbomSubject) -> str:
    if subject.minimal:
        return "the minimal image slim writes from the source image; slim:* counts are relative to it"
    return "the image as analyzed; slim:status and slim:kept-*/removed-* say what `slim build` would keep"


def _uuid(kind: str, body: bytes) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:slim:{kind}:{hashlib.sha256(body).hexdigest()}")


# -- CycloneDX 1.6 ---------------------------------------------------------------------------
def render_cyclonedx(packages: Sequence[PackageSummary], subject: SbomSubject) -> bytes:
    """A CycloneDX 1.6 JSON BOM (cyclonedx-python-lib): the image as metadata.component, one
    `library` component per package with its purl and slim:* properties."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    chosen = described(packages, subject)
    seen: set[str] = set()
    components = []
    for p in chosen:
        ref = p.purl or f"{p.manager}:{p.name}@{p.version}" + (f"?arch={p.arch}" if p.arch else "")
        base, n = ref, 1
        while ref in seen:  # the same package in two places (two venvs) is two components
            n += 1
            ref = f"{base}#{n}"
        seen.add(ref)
        components.append(Component(
            name=p.name, version=p.version or None, type=ComponentType.LIBRARY, bom_ref=ref,
            purl=PackageURL.from_string(p.purl) if p.purl else None,
            properties=[Property(name=k, value=v) for k, v in slim_facts(p)]))
    image = Component(
        name=subject.reference, version=subject.digest or None, type=ComponentType.CONTAINER,
        bom_ref="image",
        properties=[Property(name="slim:describes", value=_describes(subject)),
                    Property(name="slim:source-digest", value=subject.digest),
                    *([Property(name="slim:architecture", value=subject.architecture)]
                      if subject.architecture else [])])
    body = json.dumps([subject.reference, subject.digest, subject.minimal,
                       [[*slim_facts(p), ("ref", p.purl), ("name", p.name)] for p in chosen]]).encode()
    bom = Bom(serial_number=_uuid("cyclonedx", body))
    bom.metadata.timestamp = subject.timestamp
    bom.metadata.component = image
    bom.metadata.tools.components.add(Component(name="slim", version=__version__,
                                                 type=ComponentType.APPLICATION))
    for c in components:
        bom.components.add(c)
    bom.register_dependency(image, components)  # the image is made of its packages
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    # re-serialized with sorted keys: the same packages give the same bytes
    return (json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


# -- SPDX 2.3 ----------------------------------------------------------------------------------
def _spdx_id(kind: str, text: str) -> str:
    # SPDX 2.3 clause 7.2: SPDXRef- followed by letters, digits, '.' and '-'
    return f"SPDXRef-{kind}-" + re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")


def render_spdx(packages: Sequence[PackageSummary], subject: SbomSubject) -> bytes:
    """An SPDX 2.3 JSON document (spec clauses 6-11): the image as the package the document
    DESCRIBES, which CONTAINS one package per package, each with its purl as a PACKAGE-MANAGER
    external reference and the slim facts as an OTHER annotation."""
    when = subject.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    chosen = described(packages, subject)
    image_id = "SPDXRef-Image"
    out_packages: list[dict[str, Any]] = [{
        "SPDXID": image_id,
        "name": subject.reference,
        "versionInfo": subject.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "comment": _describes(subject),
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": image_id}]
    for i, p in enumerate(chosen, 1):
        spdx_id = _spdx_id("Package", f"{i}-{p.manager}-{p.name}")
        pkg: dict[str, Any] = {
            "SPDXID": spdx_id,
            "name": p.name,
            "versionInfo": p.version or "NOASSERTION",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "LIBRARY",
            "annotations": [{
                "annotationDate": when,
                "annotationType": "OTHER",
                "annotator": f"Tool: {TOOL}",
                "comment": "slim: " + " ".join(f"{k.removeprefix('slim:')}={v}" for k, v in slim_facts(p)),
            }],
        }
        if p.source and p.source != p.name:
            pkg["sourceInfo"] = f"built from source package {p.source}"
        if p.purl:
            pkg["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                    "referenceLocator": p.purl}]
        out_packages.append(pkg)
        relationships.append({"spdxElementId": image_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": spdx_id})
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.title,
        "creationInfo": {"created": when, "creators": [f"Tool: {TOOL}"]},
        "packages": out_packages,
        "relationships": relationships,
    }
    body = json.dumps(doc, sort_keys=True).encode()
    # clause 6.5: a unique absolute URI without '#'; derived from the content, so stable
    doc["documentNamespace"] = f"urn:uuid:{_uuid('spdx', body)}"
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


SBOM_FORMATS: dict[str, SbomFormat] = {
    "cyclonedx": SbomFormat("cyclonedx", CYCLONEDX_MEDIA_TYPE, ".cdx.json", render_cyclonedx),
    "spdx": SbomFormat("spdx", SPDX_MEDIA_TYPE, ".spdx.json", render_spdx),
}


def render_sbom(fmt: str, packages: Sequence[PackageSummary], subject: SbomSubject) -> bytes:
    """The document in format `fmt` (a SBOM_FORMATS key). Raises EmitError for another name."""
    if fmt not in SBOM_FORMATS:
        raise EmitError(f"--sbom {fmt}: unknown SBOM format (choose from {', '.join(SBOM_FORMATS)})")
    return SBOM_FORMATS[fmt].render(packages, subject)


def sbom_beside(archive: str, fmt: str) -> str:
    """Where the SBOM of a docker-archive FILE goes: FILE.cdx.json or FILE.spdx.json."""
    return archive + SBOM_FORMATS[fmt].suffix


__all__ = ["SBOM_FORMATS", "SbomFormat", "SbomSubject", "described", "render_cyclonedx",
           "render_sbom", "render_spdx", "sbom_beside", "slim_facts"]
