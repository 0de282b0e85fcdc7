"""Private functions only the __main__ block calls: their imports are the block's."""

from __future__ import annotations

import ast

from slim.analyzers.python.imports import scan_imports

SOURCE = '''
import json

def dumps(x):
    import copy          # public: live
    return _helper(x)

def _helper(x):
    import base64        # called from live code: live
    return x

def _test():
    import doctest       # only the main block calls it: dead
    _test_generator()

def _test_generator():
    import statistics    # only dead code calls it: dead

def _by_name():
    import zlib          # named by a string (getattr): live

def _attr():
    import gzip          # named as an attribute: live

@register
def _registered():
    import bz2           # decorated: live

def _unused():
    import lzma          # never named here: another module of the package calls it, live

hook = getattr(__import__(__name__), "_by_name")
obj._attr()

if __name__ == "__main__":
    import argparse      # the block itself
    _test()
'''


def test_only_main_block_callers_make_a_function_dead() -> None:
    refs = {r.module: r.main_only for r in scan_imports(ast.parse(SOURCE))}
    assert refs["json"] is False and refs["copy"] is False and refs["base64"] is False
    assert refs["zlib"] is False and refs["gzip"] is False and refs["bz2"] is False
    assert refs["doctest"] is True and refs["statistics"] is True and refs["argparse"] is True
    assert refs["lzma"] is False


def test_all_and_else_branch_keep_functions_live() -> None:
    src = ('__all__ = ["_exported"]\n'
           "def _exported():\n    import csv\n"
           "def _fallback():\n    import uuid\n"
           'if __name__ == "__main__":\n    pass\nelse:\n    _fallback()\n')
    refs = {r.module: r.main_only for r in scan_imports(ast.parse(src))}
    assert refs == {"csv": False, "uuid": False}
