"""Rule packs: where the shipped rules live, loading and validating TOML files."""

from __future__ import annotations

import os
from pathlib import Path


def rules_dir() -> Path:
    """The shipped rules/ directory: inside the wheel (slim/_rules) or the source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "_rules"
    if installed.is_dir():
        return installed
    checkout = here.parent / "rules"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"{installed}: shipped rules are missing")


def rule_file(name: str) -> Path:
    """Path of one shipped rule file, e.g. rule_file("waste.toml")."""
    return rules_dir() / name


__all__ = ["os", "rule_file", "rules_dir"]
