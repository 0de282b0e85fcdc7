"""atheris entry point for the `metadata` fuzz target (tests/fuzz/targets.py):
`python -m tests.fuzz.metadata [CORPUS_DIR] [-atheris_runs=N] [-max_total_time=S]`.
The seeds are written into CORPUS_DIR (created) when it is given and empty."""

from __future__ import annotations

import sys

from tests.fuzz.runner import fuzz

if __name__ == "__main__":
    fuzz("metadata", sys.argv)
