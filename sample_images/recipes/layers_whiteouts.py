"""layers-whiteouts: three layers exercising OCI whiteouts and an opaque directory.

OCI image-spec layer.md "Whiteouts": `.wh.NAME` deletes NAME from the layers below,
`.wh..wh..opq` hides everything a directory held below. The squashed result is in README.md
(section "layers-whiteouts") and checked by tests/unit/test_sample_images.py.
"""

from __future__ import annotations

from recipes._common import BuildContext, Layer, Recipe

NAME = "layers-whiteouts"
DESCRIPTION = "three layers: file and directory whiteouts, an opaque directory, a rewritten file"
DOCKER_FORM = "legacy"


def build(ctx: BuildContext) -> Recipe:
    l0 = Layer(created_by="layer 0: /data/{a,b,c}, /etc/app/{x,y}")
    l0.file("/data/a", "a v1\n")
    l0.file("/data/b", "b\n")
    l0.file("/data/c", "c\n")
    l0.file("/etc/app/x", "x=1\n")
    l0.file("/etc/app/y", "y=2\n")

    l1 = Layer(created_by="layer 1: rm /data/b; /etc/app opaque + z; /data/a bigger", compression="zstd")
    l1.whiteout("/data/b")
    l1.opaque("/etc/app")
    l1.dir("/etc/app")
    l1.file("/etc/app/z", "z=3\n")
    l1.file("/data/a", "a v2, rewritten bigger\n" * 64)

    l2 = Layer(created_by="layer 2: rm -r /data; add /srv/file", compression="none")
    l2.whiteout("/data")
    l2.file("/srv/file", "served\n")
    return Recipe(
        layers=[l0, l1, l2],
        config={"Cmd": ["/bin/true"]},
        tag="slim-samples/layers-whiteouts:latest",
    )
