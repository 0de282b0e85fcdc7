"""/etc/ld.so.conf and its `include` files, read as glibc's ldconfig reads them
(elf/ldconfig.c parse_conf / parse_conf_include)."""

from __future__ import annotations

import logging
import posixpath

from slim.errors import AnalysisError
from slim.fs.rootfs import RootFS
from slim.model import normpath

log = logging.getLogger(__name__)

LD_SO_CONF = "/etc/ld.so.conf"
MAX_CONF_FILES = 256  # a cap against hostile images


def parse_ld_so_conf(fs: RootFS, path: str = LD_SO_CONF) -> list[str]:
    """Library directories named by /etc/ld.so.conf and its `include` globs, in order, deduplicated.

    As ldconfig: '#' starts a comment; `include PATTERN…` reads every file matching each glob
    (a relative pattern is relative to the including file's directory, /etc for ld.so.conf);
    `hwcap` lines are ignored; "DIR=TYPE" keeps DIR. Include cycles are read once. Unreadable or
    missing files are skipped (ldconfig warns and continues).
    """
    dirs: list[str] = []
    seen_files: set[str] = set()

    def read(conf: str) -> None:
        real = fs.realpath(conf)
        if real in seen_files or len(seen_files) >= MAX_CONF_FILES:
            return
        seen_files.add(real)
        try:
            text = fs.read_text(conf)
        except AnalysisError as exc:
            log.debug("%s: skipped: %s", conf, exc)
            return
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "include" and len(words) > 1:
                for pattern in words[1:]:
                    if not pattern.startswith("/"):
                        pattern = posixpath.join(posixpath.dirname(conf), pattern)
                    for match in fs.glob3(pattern):
                        read(match)
            elif words[0] == "hwcap":
                continue
            else:
                for word in words:
                    d = normpath(word.split("=", 1)[0])
                    if d not in dirs:
                        dirs.append(d)

    read(path)
    return dirs
