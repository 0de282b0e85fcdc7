"""Find the Debian mirror for debootstrap from the host's own apt configuration, at run time.

No mirror host name is ever written into the repository: the bench reads the `URIs:` of the
deb822 entry (apt sources.list(5) "DEB822-STYLE FORMAT") whose `Suites:` include the wanted
suite, falling back to one-line `deb URI SUITE …` entries of /etc/apt/sources.list.
"""

from __future__ import annotations

import glob
import os

SOURCES_DIR = "/etc/apt/sources.list.d"
SOURCES_LIST = "/etc/apt/sources.list"


class MirrorError(RuntimeError):
    """No apt source for the suite was found."""


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
            continue
        if line[0] in " \t" and key:  # a folded continuation line
            current[key] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def find_mirror(suite: str = "bookworm", sources_dir: str = SOURCES_DIR, sources_list: str = SOURCES_LIST) -> str:
    """The first URI of an enabled `deb` source that serves `suite`. Raises MirrorError."""
    for path in sorted(glob.glob(os.path.join(sources_dir, "*.sources"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            stanzas = _deb822_stanzas(f.read())
        for st in stanzas:
            if st.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in st.get("types", "").split():
                continue
            if suite in st.get("suites", "").split() and st.get("uris"):
                return st["uris"].split()[0]
    if os.path.isfile(sources_list):
        with open(sources_list, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                # deb [options] URI SUITE COMPONENT…
                words = [w for w in words if not (w.startswith("[") or w.endswith("]"))]
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1]
    raise MirrorError(f"{sources_dir}: no apt source with suite {suite!r}")
