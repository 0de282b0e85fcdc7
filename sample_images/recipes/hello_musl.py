"""hello-musl: src/hello.c built with musl-gcc, dynamically linked, on an Alpine-shaped /lib.

musl's loader is its libc (musl ldso/dynlink.c): /lib/ld-musl-x86_64.so.1 is the real file and
/lib/libc.musl-x86_64.so.1 links to it, as on Alpine. The program's DT_NEEDED is "libc.so", which
musl's loader maps to itself; /etc/ld-musl-x86_64.path lists the library search path.
"""

from __future__ import annotations

import os

from recipes._common import DEFAULT_PATH, BuildContext, Layer, Recipe, RecipeError, compile_hello

NAME = "hello-musl"
DESCRIPTION = "C program dynamically linked against musl (Alpine-style /lib layout)"
DOCKER_FORM = "legacy"

MUSL_CANDIDATES = ("/lib/ld-musl-x86_64.so.1", "/usr/lib/x86_64-linux-musl/libc.so", "/usr/lib/musl/lib/libc.so")


def build(ctx: BuildContext) -> Recipe:
    musl = next((p for p in MUSL_CANDIDATES if os.path.isfile(p)), None)
    if musl is None:
        raise RecipeError("musl's dynamic loader not found (install musl / musl-tools)")
    ctx.record_file("ld-musl-x86_64.so.1", musl)
    hello = compile_hello(ctx, "musl-gcc", "hello-musl", [])
    ctx.record_file("hello (musl)", hello)

    base = Layer(created_by="ADD musl loader (Alpine layout)", compression="none")
    base.host_file("/lib/ld-musl-x86_64.so.1", musl, mode=0o755)
    base.symlink("/lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1")
    base.dir("/usr/lib")
    base.file("/etc/ld-musl-x86_64.path", "/lib:/usr/lib\n")
    app = Layer(created_by="COPY hello /app/hello (musl-gcc -O2 hello.c)")
    app.host_file("/app/hello", hello, mode=0o755)
    return Recipe(
        layers=[base, app],
        config={"Entrypoint": ["/app/hello"], "Env": [DEFAULT_PATH]},
        tag=f"slim-samples/{NAME}:latest",
    )
