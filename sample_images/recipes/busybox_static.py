"""busybox-static: Debian's statically linked busybox with a few applet symlinks.

The binary comes from `apt-get download busybox-static` + `dpkg-deb -x`, run at build time.
"""

from __future__ import annotations

from recipes._common import DEFAULT_PATH, BuildContext, Recipe, busybox_layer

NAME = "busybox-static"
DESCRIPTION = "static busybox as /bin/busybox with sh, ls, cat, echo symlinks"
DOCKER_FORM = "legacy"


def build(ctx: BuildContext) -> Recipe:
    layer = busybox_layer(ctx, ["sh", "ls", "cat", "echo"], "ADD busybox-static (dpkg-deb -x)")
    return Recipe(
        layers=[layer],
        config={"Cmd": ["/bin/sh", "-c", "echo hello from busybox"], "Env": [DEFAULT_PATH]},
        tag=f"slim-samples/{NAME}:latest",
    )
