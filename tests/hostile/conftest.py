"""Fixtures of the hostile-input suite: a private sandbox per case, and the figures it
measured (written to $SLIM_HOSTILE_REPORT as JSON when set)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.harness import Run, Sandbox

FIGURES: list[dict[str, object]] = []


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path / "box")


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator:
    """record(run, **extra): keep this case's figures for the report."""

    def add(run: Run, **extra: object) -> None:
        FIGURES.append({"case": request.node.nodeid.split("::", 1)[1], "rc": run.rc,
                        "seconds": round(run.seconds, 2), "maxrss_mb": round(run.maxrss_kb / 1024, 1),
                        "disk_mb": round(run.disk_kb / 1024, 1), **extra})

    yield add


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hostile: runs the real CLI on a hostile input "
                            "(tests/hostile; about 2.5 minutes in all)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.hostile)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("SLIM_HOSTILE_REPORT")
    if path and FIGURES:
        Path(path).write_text(json.dumps(FIGURES, indent=1) + "\n")
