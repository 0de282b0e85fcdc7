"""shell-entrypoint: a /bin/sh entrypoint script that sources a library and runs programs.

/app/start.sh (`#!/bin/sh`) sources /app/lib.sh, runs `cat /app/config.txt` and
`/usr/bin/env ls /app`; busybox provides sh, cat, ls and env.
"""

from __future__ import annotations

from recipes._common import DEFAULT_PATH, BuildContext, Layer, Recipe, busybox_layer

NAME = "shell-entrypoint"
DESCRIPTION = "busybox /bin/sh running /app/start.sh, which sources lib.sh and runs cat, env, ls"
DOCKER_FORM = "oci"

START_SH = """#!/bin/sh
# Entry point of the shell-entrypoint sample image.
set -e
. /app/lib.sh
greet "shell-entrypoint"
cat /app/config.txt
/usr/bin/env ls /app
"""

LIB_SH = """# Sourced by /app/start.sh.
greet() {
    echo "hello from $1"
}
"""


def build(ctx: BuildContext) -> Recipe:
    base = busybox_layer(ctx, ["sh", "cat", "ls", "echo", "/usr/bin/env"], "ADD busybox-static (dpkg-deb -x)")
    app = Layer(created_by="COPY start.sh lib.sh config.txt /app/", compression="zstd")
    app.file("/app/start.sh", START_SH, mode=0o755)
    app.file("/app/lib.sh", LIB_SH)
    app.file("/app/config.txt", "greeting=hello\nmode=sample\n")
    return Recipe(
        layers=[base, app],
        config={"Entrypoint": ["/app/start.sh"], "Env": [DEFAULT_PATH], "WorkingDir": "/app"},
        tag=f"slim-samples/{NAME}:latest",
    )
