"""Runs one fuzz target under atheris (coverage-guided, libFuzzer options on the command line).
A crash is an exception other than SlimError escaping the target: atheris prints it and saves
the input as crash-<sha1> in the working directory."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def fuzz(name: str, argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["slim"]):
        # the targets import lazily: load every module they reach while instrumenting
        import slim.elf
        import slim.fs.extract
        import slim.fs.layer
        import slim.sources.archive
        import slim.syscalls.extract  # noqa: F401
        from tests.fuzz import targets
    target = targets.TARGETS[name]
    corpus = next((a for a in argv[1:] if not a.startswith("-")), None)
    if corpus is not None:
        path = Path(corpus)
        path.mkdir(parents=True, exist_ok=True)
        if not any(path.iterdir()):
            for seed in targets.seeds(name):
                (path / hashlib.sha1(seed).hexdigest()).write_bytes(seed)

    def one_input(data: bytes) -> None:
        if len(data) <= targets.MAX_INPUT:
            target(data)

    os.environ.setdefault("SLIM_NO_CACHE", "1")
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    fuzz(sys.argv[1], sys.argv[1:])
