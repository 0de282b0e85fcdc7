"""Hostile programs: garbled ELF files as the entrypoint (static analysis, --syscalls, seccomp),
entrypoint link loops, and scripts made to cost: megabyte lines, deep substitutions, Python
sources that explode ast.parse."""

from __future__ import annotations

import json
import struct

import pytest

from tests.hostile import forge
from tests.hostile.forge import T, elf_header, phdr
from tests.hostile.harness import Sandbox, baseline, check, run_slim


def _image(box: Sandbox, program: bytes, extra: list[T] | None = None, config: dict | None = None) -> str:
    members = [T("bin", "d"), T("bin/sh", data=bytes(elf_header()), mode=0o755),
               T("bin/app", data=program, mode=0o755), *(extra or [])]
    return str(forge.docker_archive(box.inputs / "img.tar", [forge.tar(members)],
                                    config or {"Entrypoint": ["/bin/app"]}))


def _analyze(box: Sandbox, ref: str, *extra: str, **kw):
    report = box.out / "report.json"
    before = baseline(box, (report,))
    run = run_slim(box, "analyze", ref, "-f", "json", "-o", str(report), *extra, **kw)
    return run, before, report


def _garbled() -> list[tuple[str, bytes]]:
    real = forge.host_elf()
    interp_far = elf_header(e_phnum=1) + phdr(3, 1 << 40, 28)
    interp_huge = elf_header(e_phnum=1) + phdr(3, 120, 1 << 20) + b"/lib64/" + b"A" * (1 << 20)
    dynamic_junk = elf_header(e_phnum=1) + phdr(2, 120, 4096) + bytes(range(256)) * 16
    cases = [
        ("header-only", bytes(elf_header())),
        ("phnum-65535", bytes(elf_header(e_phnum=0xFFFF, e_phoff=1 << 62))),
        ("shnum-65535", bytes(elf_header(e_shnum=0xFFFF, e_shoff=64, e_shstrndx=0xFFFE)) + bytes(4096)),
        ("shoff-beyond-eof", bytes(elf_header(e_shnum=40, e_shoff=1 << 30, e_shstrndx=3))),
        ("interp-beyond-eof", bytes(interp_far)),
        ("interp-1MiB", bytes(interp_huge)),
        ("dynamic-garbage", bytes(dynamic_junk)),
        ("class32-machine-arm", b"\x7fELF\x01\x01\x01" + bytes(9) + struct.pack("<HHI", 2, 40, 1) + bytes(40)),
        ("magic-then-zeros", b"\x7fELF" + bytes(1 << 20)),
        ("truncated-real", real[:1000]),
        ("truncated-real-half", real[: len(real) // 2]),
        # 2 MiB of code no byte of which decodes (0x06 is not an x86-64 instruction): the sweep
        # steps over each; restarting from a copy of the rest each time was quadratic (~2 TB copied)
        ("code-undecodable-2MiB", bytes(elf_header(e_phnum=1) + phdr(1, 0, 120 + (2 << 20)))
         + bytes(64) + b"\x06" * (2 << 20)),
        # code whose addresses pass 2**64 (capstone wraps them to 0): the sweep went back to the
        # start of the segment forever, its memory growing
        ("code-past-2**64", bytes(elf_header(e_phnum=1, e_entry=0) + phdr(1, 0, 120 + 4096, vaddr=2**64 - 0x1000))
         + b"\x90" * 4096),
    ]
    cases += [(f"flipped-{seed}", forge.flip(real, seed)) for seed in range(1, 9)]
    return cases


GARBLED = _garbled()


@pytest.mark.parametrize("program", [c[1] for c in GARBLED], ids=[c[0] for c in GARBLED])
def test_garbled_elf_entrypoint_is_analyzed_without_a_traceback(box: Sandbox, program: bytes) -> None:
    ref = _image(box, program)
    run, before, report = _analyze(box, ref, "--syscalls")
    check(box, run, rc=0, outputs=(report,), before=before)
    doc = json.loads(report.read_text())
    assert any(k["path"] == "/bin/app" for k in doc["keep"])  # kept, whatever it holds


@pytest.mark.parametrize("program", [c[1] for c in GARBLED[:6]], ids=[c[0] for c in GARBLED[:6]])
def test_garbled_elf_seccomp_is_one_line(box: Sandbox, program: bytes) -> None:
    ref = _image(box, program)
    profile = box.out / "seccomp.json"
    before = baseline(box, (profile,))
    run = run_slim(box, "seccomp", ref, "-o", str(profile))
    # a profile (0) or "no syscalls found" (3); never a traceback
    check(box, run, rc=run.rc if run.rc in (0, 3) else -1,
          error=None if run.rc == 0 else r"no syscalls found", outputs=(profile,), before=before)


def test_seccomp_on_an_image_without_elf_is_an_analysis_error(box: Sandbox) -> None:
    ref = str(forge.docker_archive(box.inputs / "img.tar", [forge.tar([T("run.sh", data=b"#!/x\n", mode=0o755)])],
                                   {"Entrypoint": ["/run.sh"]}))
    before = baseline(box)
    run = run_slim(box, "seccomp", ref, "-o", str(box.out / "p.json"))
    check(box, run, rc=3, error=r"no syscalls found", before=before)


def test_entrypoint_link_loop_is_reported_as_a_loop(box: Sandbox) -> None:
    members = [T("bin", "d"), T("bin/app", "l", link="app2"), T("bin/app2", "l", link="/bin/app")]
    ref = str(forge.docker_archive(box.inputs / "img.tar", [forge.tar(members)], {"Entrypoint": ["/bin/app"]}))
    run, before, report = _analyze(box, ref)
    check(box, run, rc=0, outputs=(report,), before=before)
    reasons = [u["reason"] for u in json.loads(report.read_text())["unknowns"]]
    assert any("symlink loop" in r for r in reasons), reasons


# -- scripts -------------------------------------------------------------------------------
SH = {"Entrypoint": ["/app/run.sh"], "WorkingDir": "/app"}
SCRIPTS = [
    ("line-1MiB", b"#!/bin/sh\necho " + b"a " * (1 << 19) + b"\n"),
    ("open-quote-1MiB", b"#!/bin/sh\necho '" + b"a " * (1 << 19) + b"\n" + b"b\n" * 300),
    ("escapes-1MiB", b'#!/bin/sh\necho "' + b"\\a" * (1 << 19) + b'"\n'),
    ("nested-subst-250k", b"#!/bin/sh\necho " + b"$(" * (1 << 18) + b")" * (1 << 18) + b"\n"),
    ("open-subst-256k", b"#!/bin/sh\necho " + b"$(a " * (1 << 16) + b"\n"),
    ("lines-60KiB-x60", b"#!/bin/sh\n" + (b'echo "' + b"\\a" * 30000 + b'"\n') * 60),
    ("shebang-100KiB", b"#!" + b"/" * (100 << 10)),
    ("sources-itself", b"#!/bin/sh\n. /app/run.sh\n. ./run.sh\n"),
]


@pytest.mark.parametrize("script", [c[1] for c in SCRIPTS], ids=[c[0] for c in SCRIPTS])
def test_costly_shell_scripts(box: Sandbox, record, script: bytes) -> None:
    ref = _image(box, bytes(elf_header()), [T("app", "d"), T("app/run.sh", data=script, mode=0o755)], SH)
    run, before, report = _analyze(box, ref, timeout=120)
    record(run, script_bytes=len(script))
    check(box, run, rc=0, outputs=(report,), before=before)
    assert run.seconds < 30, f"{run.seconds:.1f} s"


STD = "usr/lib/python3.11"
PYTHON = [
    ("a-lines-1MB", b"a\n" * (1 << 19)),
    ("names-1MB", b"x = [" + b"a," * (1 << 19) + b"]\n"),
    ("elif-5000", b"if a:\n    pass\n" + b"elif a:\n    pass\n" * 5000),
    ("binop-20000", b"x = " + b"a+" * 20000 + b"a\n"),
    ("parens-200", b"x = " + b"(" * 200 + b")" * 200 + b"\n"),
    ("null-bytes", b"import os\x00\n"),
]


@pytest.mark.parametrize("source", [c[1] for c in PYTHON], ids=[c[0] for c in PYTHON])
def test_pathological_python_is_an_unknown_that_keeps_the_file(box: Sandbox, record, source: bytes) -> None:
    members = [T("usr/bin/python3.11", data=bytes(elf_header()), mode=0o755), T(f"{STD}/os.py"),
               T(f"{STD}/site.py"), T(f"{STD}/encodings/__init__.py"),
               T("app/app.py", data=b"import os\n" + source)]
    ref = str(forge.docker_archive(box.inputs / "img.tar", [forge.tar(members)],
                                   {"Entrypoint": ["/usr/bin/python3.11", "/app/app.py"], "WorkingDir": "/app"}))
    run, before, report = _analyze(box, ref, timeout=120)
    record(run, source_bytes=len(source))
    check(box, run, rc=0, outputs=(report,), before=before)
    doc = json.loads(report.read_text())
    assert any(k["path"] == "/app/app.py" for k in doc["keep"])
    assert run.maxrss_kb < 400 << 10, f"{run.maxrss_kb // 1024} MB RSS"


def test_apk_database_with_a_unicode_digit_size(box: Sandbox) -> None:
    db = b"C:Q1x=\nP:musl\nV:1.2\nI:\xc2\xb2\nR:libc.musl-x86_64.so.1\nF:lib\n\n"
    ref = _image(box, bytes(elf_header()), [T("lib", "d"), T("lib/apk", "d"), T("lib/apk/db", "d"),
                                              T("lib/apk/db/installed", data=db)],
                 {"Entrypoint": ["/bin/app"], "WorkingDir": "/srv"})
    run, before, report = _analyze(box, ref)
    check(box, run, rc=0, outputs=(report,), before=before)
