"""slim: make container and host images small without breaking them."""

from __future__ import annotations

__version__ = "0.1.0"
