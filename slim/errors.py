"""Error hierarchy. Library code raises these; only cli.py turns them into exit codes.

Every message starts with the object it is about (a path, a reference, a digest), so the
one line the CLI prints tells the user what to look at.
"""

from __future__ import annotations


class SlimError(Exception):
    """Base of every error slim raises on purpose (exit code 3)."""


class SourceError(SlimError):
    """An image reference could not be opened or its metadata is invalid."""


class LayerError(SlimError):
    """A layer blob is corrupt, truncated, or does not match its digest."""


class AnalysisError(SlimError):
    """Static analysis failed in a way that cannot be recorded as an Unknown."""


class TraceError(SlimError):
    """A traced run could not be started, or its probes failed."""


class RuleError(SlimError):
    """A rule pack or a budget configuration is invalid."""


class EmitError(SlimError):
    """An output (image, report, profile, manifest) could not be written."""


class ClusterError(SlimError):
    """The Dask cluster `slim fleet` runs on cannot be reached or lost a task."""


class UsageError(SlimError):
    """The command line asks for something inconsistent (exit code 2)."""
