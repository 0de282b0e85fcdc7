"""Recipes of the committed sample images: one module per image (see ../README.md)."""

MODULES = ("hello_glibc", "busybox_static", "layers_whiteouts", "shell_entrypoint", "hello_musl")
