"""Hostile inputs made by code: layer tars with hand-edited headers, compression bombs that
cost kilobytes to make, images around them with JSON anyone could have written, garbled ELF
files. Nothing here is committed as bytes; every case is built in the test's temp dir.

Independent of slim's own writer (as tests/imagekit.py is), so slim's readers are tested
against a second, deliberately careless, implementation.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.imagekit import write_tree

BLOCK = 512
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ELF_HEAD = b"\x7fELF\x02\x01\x01" + b"\x00" * 9


# -- tar members ---------------------------------------------------------------------------
@dataclass
class T:
    """One tar member. kind: f(ile) d(ir) l(symlink) h(ardlink) c(har) p(fifo); `pax` adds PAX
    records; `patch` edits the ustar header block (offset → bytes) after it is made, and the
    checksum is recomputed."""

    name: str
    kind: str = "f"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    pax: dict[str, str] = field(default_factory=dict)
    patch: dict[int, bytes] = field(default_factory=dict)
    size: int | None = None  # the header's size field, when it must lie


_TYPES = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
          "h": tarfile.LNKTYPE, "c": tarfile.CHRTYPE, "p": tarfile.FIFOTYPE}


def _checksum(header: bytearray) -> None:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header[:BLOCK])


def member(t: T) -> bytes:
    """The bytes of one member (its PAX header first when it has records), data padded."""
    info = tarfile.TarInfo(t.name)
    info.type = _TYPES[t.kind]
    info.mode = t.mode if t.kind != "d" else 0o755
    info.mtime = 1_700_000_000
    info.linkname = t.link
    info.size = len(t.data) if t.kind == "f" else 0
    if t.kind == "c":
        info.devmajor, info.devminor = 1, 3
    out = bytearray()
    if t.pax:
        out += tarfile.TarInfo._create_pax_generic_header(  # type: ignore[attr-defined]
            dict(t.pax), tarfile.XHDTYPE, "utf-8")
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT if len(t.name) > 99 else tarfile.USTAR_FORMAT))
    last = bytearray(header[-BLOCK:])
    if t.size is not None:
        if t.size < 0:
            last[124:136] = b"\xff" * 4 + (t.size & (1 << 64) - 1).to_bytes(8, "big")
        else:
            last[124:136] = b"%011o\x00" % t.size
    for offset, raw in t.patch.items():
        last[offset : offset + len(raw)] = raw
    _checksum(last)
    out += header[:-BLOCK] + last
    if t.kind == "f":
        out += t.data + bytes(-len(t.data) % BLOCK)
    return bytes(out)


def tar(members: Iterable[T | bytes], *, end: bool = True) -> bytes:
    """A tar of `members` (bytes are put in as they are), with the two end blocks."""
    out = b"".join(m if isinstance(m, bytes) else member(m) for m in members)
    return out + (bytes(2 * BLOCK) if end else b"")


def zero_member_header(name: str, size: int) -> bytes:
    """The header of a regular member of `size` bytes (its data is not included)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(tarfile.PAX_FORMAT)


def gnu_tar(root: Path, names: list[str], fmt: str = "gnu") -> bytes:
    """A layer made by GNU tar --sparse from files under `root` (sparse members in the old GNU
    format, or PAX 1.0 with fmt="posix")."""
    out = root.parent / f"{root.name}.{fmt}.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-C", str(root), "-cf", str(out), *names],
                   check=True)
    return out.read_bytes()


def sparse_tree(root: Path, name: str, size: int, data_at: int = 1 << 20) -> None:
    """A file of `size` bytes that is one hole with 4 bytes of data at `data_at`."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(data_at)
        f.write(b"data")


# -- compression bombs ---------------------------------------------------------------------
def zstd_bomb(head: bytes, zeros: int, tail: bytes = b"", *, content_size: int | None = None) -> bytes:
    """One zstd frame (RFC 8878) of raw blocks for `head` and `tail` around RLE blocks of
    zeros: a 4 GiB member costs 128 KiB. `content_size` declares a Frame_Content_Size in a
    single-segment frame (a decoder that trusts it allocates that much)."""
    if content_size is None:
        out = bytearray(ZSTD_MAGIC + bytes([0x00, 0x38]))  # no FCS, window 2^17
    else:
        out = bytearray(ZSTD_MAGIC + bytes([0xE0]) + struct.pack("<Q", content_size))
    blocks: list[tuple[int, bytes, int]] = []  # (type, payload, size)
    for i in range(0, len(head), 1 << 17):
        chunk = head[i : i + (1 << 17)]
        blocks.append((0, chunk, len(chunk)))
    left = zeros
    while left:
        n = min(left, 1 << 17)
        blocks.append((1, b"\x00", n))
        left -= n
    for i in range(0, len(tail), 1 << 17):
        chunk = tail[i : i + (1 << 17)]
        blocks.append((0, chunk, len(chunk)))
    for i, (kind, payload, size) in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        out += (last | kind << 1 | size << 3).to_bytes(3, "little") + payload
    return bytes(out)


def gzip_bomb(head: bytes, zeros: int, tail: bytes = b"") -> bytes:
    """Multi-member gzip: `head`, `zeros` zero bytes (one 16 MiB member repeated), `tail`."""
    unit = 16 << 20
    member_ = gzip.compress(bytes(unit), 1, mtime=0)
    parts = [gzip.compress(head, 1, mtime=0)]
    parts += [member_] * (zeros // unit)
    if zeros % unit:
        parts.append(gzip.compress(bytes(zeros % unit), 1, mtime=0))
    parts.append(gzip.compress(tail, 1, mtime=0))
    return b"".join(parts)


def bomb_layer(kind: str, name: str, size: int) -> bytes:
    """A compressed layer holding one zero-filled member of `size` bytes."""
    head = zero_member_header(name, size)
    tail = bytes(-size % BLOCK) + bytes(2 * BLOCK)
    return zstd_bomb(head, size, tail) if kind == "zstd" else gzip_bomb(head, size, tail)


# -- ELF -----------------------------------------------------------------------------------
def elf_header(**fields: int) -> bytearray:
    """A 64-byte ELF64 little-endian x86-64 executable header; `fields` override by name."""
    values = {"e_type": 2, "e_machine": 62, "e_version": 1, "e_entry": 0x401000, "e_phoff": 64,
              "e_shoff": 0, "e_flags": 0, "e_ehsize": 64, "e_phentsize": 56, "e_phnum": 0,
              "e_shentsize": 64, "e_shnum": 0, "e_shstrndx": 0}
    values.update(fields)
    return bytearray(ELF_HEAD + struct.pack(
        "<HHIQQQIHHHHHH", values["e_type"], values["e_machine"], values["e_version"],
        values["e_entry"], values["e_phoff"], values["e_shoff"], values["e_flags"],
        values["e_ehsize"], values["e_phentsize"], values["e_phnum"], values["e_shentsize"],
        values["e_shnum"], values["e_shstrndx"]))


def phdr(p_type: int, offset: int, filesz: int, vaddr: int = 0x400000, flags: int = 5) -> bytes:
    return struct.pack("<IIQQQQQQ", p_type, flags, offset, vaddr, vaddr, filesz, filesz, 0x1000)


def host_elf() -> bytes:
    """A real dynamically linked program of the host (the seed garbled ELF cases start from)."""
    for path in ("/usr/bin/true", "/bin/true"):
        if os.path.exists(path):
            return Path(path).read_bytes()
    raise FileNotFoundError("no /usr/bin/true on this host")


def flip(data: bytes, seed: int, count: int = 64) -> bytes:
    """`data` with `count` bytes after the ELF identification overwritten (deterministic)."""
    import random

    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(count):
        i = rng.randrange(16, len(out))
        out[i] = rng.randrange(256)
    return bytes(out)


# -- images --------------------------------------------------------------------------------
def sha(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


def config_doc(tars: list[bytes], config: dict[str, Any] | None = None, *,
               alg: str = "sha256") -> dict[str, Any]:
    return {
        "architecture": "amd64", "os": "linux", "config": json.loads(json.dumps(config or {})),
        "rootfs": {"type": "layers", "diff_ids": [sha(t, alg) for t in tars]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
    }


Edit = Callable[[Any], Any]


def oci(dest: Path, tars: list[bytes], config: dict[str, Any] | None = None, *,
        blobs: list[bytes] | None = None, alg: str = "sha256",
        edit_config: Edit | None = None, edit_manifest: Edit | None = None,
        edit_index: Edit | None = None, raw_config: bytes | None = None,
        raw_manifest: bytes | None = None, raw_index: bytes | None = None) -> Path:
    """An OCI layout at `dest`: layer `tars` stored as `blobs` (default: gzip of each tar),
    digests in `alg`. The edit_* callbacks get the parsed document and return what is written
    (anything JSON can hold); raw_* replace the bytes outright."""
    dest.mkdir(parents=True, exist_ok=True)

    def put(data: bytes, a: str = alg) -> str:
        digest = sha(data, a)
        path = dest / "blobs" / a / digest.split(":", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    stored = blobs if blobs is not None else [gzip.compress(t, 1, mtime=0) for t in tars]
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(b),
               "size": len(b)} for b in stored]
    cfg: Any = config_doc(tars, config, alg=alg)
    if edit_config is not None:
        cfg = edit_config(cfg)
    cfg_bytes = raw_config if raw_config is not None else json.dumps(cfg).encode()
    man: Any = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": put(cfg_bytes), "size": len(cfg_bytes)},
                "layers": layers}
    if edit_manifest is not None:
        man = edit_manifest(man)
    man_bytes = raw_manifest if raw_manifest is not None else json.dumps(man).encode()
    index: Any = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(man_bytes),
         "size": len(man_bytes)}]}
    if edit_index is not None:
        index = edit_index(index)
    (dest / "index.json").write_bytes(raw_index if raw_index is not None else json.dumps(index).encode())
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return dest


def docker_archive(dest: Path, tars: list[bytes], config: dict[str, Any] | None = None, *,
                   blobs: list[bytes] | None = None, edit_config: Edit | None = None,
                   edit_manifest: Edit | None = None, raw_manifest: bytes | None = None,
                   raw_config: bytes | None = None) -> Path:
    """A legacy `docker save` tar: `<hex>.json`, `layerN/layer.tar`, `manifest.json`."""
    cfg: Any = config_doc(tars, config)
    if edit_config is not None:
        cfg = edit_config(cfg)
    cfg_bytes = raw_config if raw_config is not None else json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    stored = blobs if blobs is not None else tars
    names = [f"layer{i}/layer.tar" for i in range(len(stored))]
    man: Any = [{"Config": cfg_name, "RepoTags": ["hostile:latest"], "Layers": names}]
    if edit_manifest is not None:
        man = edit_manifest(man)
    man_bytes = raw_manifest if raw_manifest is not None else json.dumps(man).encode()
    with tarfile.open(dest, "w") as tf:
        for name, data in [(cfg_name, cfg_bytes), *zip(names, stored, strict=True), ("manifest.json", man_bytes)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return dest


def rootfs(dest: Path, files: dict[str, bytes], links: dict[str, str] | None = None,
           config: dict[str, Any] | None = None) -> Path:
    """A `rootfs:DIR` tree; programs (bin/ dirs, ELF, #!) are made executable."""
    write_tree(dest, dict(files), links, config)
    return dest


def copy_sample(name: str, dest: Path) -> Path:
    """A copy of one of sample_images/ (a real, small, valid image)."""
    src = Path(__file__).resolve().parents[2] / "sample_images" / name / f"{name}.docker.tar"
    shutil.copyfile(src, dest)
    return dest


# The smallest image that runs something: a fake ELF program as entrypoint.
def app_files(extra: dict[str, bytes] | None = None) -> list[T]:
    members = [T("bin", "d"), T("bin/app", data=bytes(elf_header()), mode=0o755)]
    for name, data in (extra or {}).items():
        members.append(T(name, data=data, mode=0o755 if data.startswith((b"#!", b"\x7fELF")) else 0o644))
    return members


APP_CONFIG = {"Entrypoint": ["/bin/app"]}
