"""NodeAnalyzer: tokenizer, Node's resolution algorithm and a small app with node_modules."""

from __future__ import annotations

import json
from pathlib import Path

from slim.analyzers.node import NodeAnalyzer, node_roots, scan_specifiers
from slim.model import Unknown
from tests.unit.analyzers.test_python import ELF, closure, context, write_tree

APP_JS = r"""
'use strict';
// require('commented-out')
/* import x from 'also-commented' */
const s = "require('inside-string')";
const re = /require\('in-regex'\)/g;
const t = `template ${require('./lib/inner')} require('in-template')`;
const express = require('express');
const util = require("./lib/util");
const cfg = require('./config.json');
const fs = require('fs');
const path = require('node:path');
const data = JSON.parse(fs.readFileSync('/app/data/static.json', 'utf8'));
const tpl = fs.readFileSync(path.join(__dirname, 'views', 'page.json'));
const addon = require('native-addon');
const name = 'x';
const dyn = require(name);
async function later() { return import('esm-only/feature'); }
require('missing-package');
"""

NODE_FILES: dict[str, str | bytes] = {
    "/usr/local/bin/node": ELF,
    "/app/server.js": APP_JS,
    "/app/package.json": json.dumps({"name": "app", "main": "server.js"}),
    "/app/config.json": "{}",
    "/app/data/static.json": "{}",
    "/app/data/unlinked.json": "{}",
    "/app/views/page.json": "{}",
    "/app/lib/util.js": "import helper from '../helpers/index.mjs';\nexport * from './more';\n",
    "/app/lib/more.js": "module.exports = {}\n",
    "/app/lib/inner.js": "",
    "/app/helpers/index.mjs": "export default 1;\n",
    # classic package: main
    "/app/node_modules/express/package.json": json.dumps({"name": "express", "main": "./lib/express"}),
    "/app/node_modules/express/lib/express.js": "module.exports = require('./router');\n",
    "/app/node_modules/express/lib/router/index.js": "require('depd');\n",
    "/app/node_modules/express/lib/unused.js": "",
    "/app/node_modules/express/node_modules/depd/index.js": "",
    # exports with conditions and subpath patterns
    "/app/node_modules/esm-only/package.json": json.dumps({
        "name": "esm-only",
        "exports": {".": {"import": "./dist/index.mjs", "require": "./dist/index.cjs"},
                    "./feature": {"node": {"import": "./dist/feature.mjs"}, "default": "./dist/feature.js"},
                    "./internal/*": None},
        "main": "./legacy.js",
    }),
    "/app/node_modules/esm-only/dist/index.mjs": "",
    "/app/node_modules/esm-only/dist/feature.mjs": "",
    "/app/node_modules/esm-only/dist/feature.js": "",
    "/app/node_modules/esm-only/legacy.js": "",
    # a native addon
    "/app/node_modules/native-addon/package.json": json.dumps({"main": "build/Release/addon.node"}),
    "/app/node_modules/native-addon/build/Release/addon.node": ELF,
}
NODE_CONFIG = {"WorkingDir": "/app", "Entrypoint": ["node", "server.js"],
               "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]}


def test_scanner_skips_comments_strings_regexes() -> None:
    specs = {s.text for s in scan_specifiers(APP_JS) if not s.dynamic}
    assert {"express", "./lib/util", "./config.json", "fs", "node:path", "./lib/inner",
            "esm-only/feature", "missing-package", "native-addon"} <= specs
    for bogus in ("commented-out", "also-commented", "inside-string", "in-regex", "in-template"):
        assert bogus not in specs
    assert any(s.dynamic and s.how == "require" for s in scan_specifiers(APP_JS))
    esm = scan_specifiers("import a, {b} from 'x';\nexport {c} from \"y\";\nimport 'z';\n"
                          "import * as ns from 'w';\nconst q = 10 / 2 / 1; import('v');\n")
    assert [s.text for s in esm] == ["x", "y", "z", "w", "v"]


def test_node_app_closure(tmp_path: Path) -> None:
    write_tree(tmp_path, NODE_FILES, config=NODE_CONFIG)
    with context(tmp_path) as ctx:
        roots = node_roots(ctx, list(ctx.config.argv))
        keep, edges, unknowns = closure(ctx, roots, [NodeAnalyzer])
    expected = {
        "/app/server.js", "/app/package.json", "/app/config.json", "/app/lib/util.js",
        "/app/lib/more.js", "/app/lib/inner.js", "/app/helpers/index.mjs",
        "/app/data/static.json", "/app/views/page.json",
        "/app/node_modules/express/package.json", "/app/node_modules/express/lib/express.js",
        "/app/node_modules/express/lib/router/index.js",
        "/app/node_modules/express/node_modules/depd/index.js",
        "/app/node_modules/esm-only/dist/feature.mjs", "/app/node_modules/esm-only/dist/feature.js",
        "/app/node_modules/native-addon/build/Release/addon.node",
    }
    assert expected <= keep, sorted(expected - keep)
    for dropped in ("/app/node_modules/express/lib/unused.js", "/app/data/unlinked.json",
                    "/app/node_modules/esm-only/legacy.js"):
        assert dropped not in keep
    kinds = {e.dst: e.kind for e in edges if e.src == "/app/server.js"}
    assert kinds["/app/data/static.json"] == "config"
    reasons = [u.reason for u in unknowns if isinstance(u, Unknown) and u.path == "/app/server.js"]
    assert any("missing-package" in r and "line 19" in r for r in reasons)
    assert any("non-literal" in r for r in reasons)
    assert not any("'fs'" in r or "node:path" in r for r in reasons)  # builtins need no file


def test_exports_blocks_unexported_and_main_fallback(tmp_path: Path) -> None:
    write_tree(tmp_path, NODE_FILES, config=NODE_CONFIG)
    with context(tmp_path) as ctx:
        from slim.analyzers.node import NodeResolver

        r = NodeResolver(ctx)
        got = r.resolve("esm-only", "/app/lib")
        assert got is not None and "/app/node_modules/esm-only/dist/index.mjs" in got
        assert "/app/node_modules/esm-only/legacy.js" not in got  # exports wins over main
        assert r.resolve("esm-only/internal/x", "/app") is None
        assert r.resolve("depd", "/app") is None  # nested node_modules is not visible from /app
        assert node_roots(ctx, ["python3", "x.py"]) == []


def test_template_prefix_and_package_imports(tmp_path: Path) -> None:
    files = dict(NODE_FILES)
    files["/app/server.js"] = (
        "const cmd = require(`./commands/${name}.js`);\n"
        "const fixed = require(`./lib/util`);\n"
        "import styles from '#styles';\n"
    )
    files["/app/package.json"] = json.dumps({"name": "app", "imports": {
        "#styles": {"node": "./lib/more.js", "default": "./lib/inner.js"}}})
    files["/app/commands/install.js"] = ""
    files["/app/commands/help.js"] = ""
    files["/app/commands/README.md"] = ""
    write_tree(tmp_path, files, config=NODE_CONFIG)
    with context(tmp_path) as ctx:
        out = list(NodeAnalyzer(ctx).analyze(ctx.fs.get("/app/server.js")))  # type: ignore[arg-type]
    dsts = {e.dst for e in out if not isinstance(e, Unknown)}
    assert {"/app/commands/install.js", "/app/commands/help.js", "/app/lib/util.js",
            "/app/lib/more.js", "/app/lib/inner.js"} <= dsts
    assert "/app/commands/README.md" not in dsts
    assert any(isinstance(u, Unknown) and "./commands/" in u.reason for u in out)


def test_javascript_without_a_runtime_is_a_browser_asset(tmp_path: Path) -> None:
    """Django admin's static/*.js in an image without node: no require() is followed."""
    files = {"/usr/bin/python3": ELF,
             "/site/static/admin/js/vendor/x.js": "var g = require('../internals/global');\n"}
    write_tree(tmp_path, files, None, {"Env": ["PATH=/usr/bin"]})
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/site/static/admin/js/vendor/x.js")
        assert entry is not None and not NodeAnalyzer(ctx).wants(entry)
    write_tree(tmp_path, {"/usr/local/bin/node": ELF}, None, {"Env": ["PATH=/usr/local/bin:/usr/bin"]})
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/site/static/admin/js/vendor/x.js")
        assert entry is not None and NodeAnalyzer(ctx).wants(entry)
