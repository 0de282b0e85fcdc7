"""ConfigAnalyzer: nginx and lighttpd include lines followed inside a crafted rootfs: tree."""

from __future__ import annotations

from pathlib import Path

from slim.analyzers.base import AnalysisContext
from slim.analyzers.config import ConfigAnalyzer, nginx_directives
from slim.image import LoadedImage
from slim.model import Edge, Unknown
from slim.pipeline import load_image


def put(root: Path, path: str, text: str) -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)


def run(root: Path, path: str, opened: list[LoadedImage]) -> tuple[list[Edge], list[Unknown]]:
    img = load_image(f"rootfs:{root}")
    opened.append(img)
    analyzer = ConfigAnalyzer(AnalysisContext(fs=img.rootfs, config=img.image.config))
    entry = img.rootfs.stat(path)
    assert entry is not None and analyzer.wants(entry)
    items = list(analyzer.analyze(entry))
    return [i for i in items if isinstance(i, Edge)], [i for i in items if isinstance(i, Unknown)]


NGINX_CONF = """\
user www-data;
load_module modules/ngx_stream_module.so;
include /etc/nginx/modules-enabled/*.conf;   # a comment; include /nope;
events { worker_connections 768; }
http {
    include mime.types;
    include "conf.d/*.conf";
    include missing.conf;
    server {
        root /var/www/html;
        ssl_certificate /etc/ssl/site.pem;
        location /x { alias $document_root/x; }
    }
}
"""


def test_nginx_directives_parse() -> None:
    names = [(n, a) for _, n, a in nginx_directives(NGINX_CONF)]
    assert ("include", ["mime.types"]) in names
    assert ("include", ["conf.d/*.conf"]) in names
    assert ("include", ["/nope"]) not in names  # in a comment


def test_nginx_includes_and_files(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, "/etc/nginx/nginx.conf", NGINX_CONF)
    put(root, "/etc/nginx/mime.types", "types {}\n")
    put(root, "/etc/nginx/conf.d/a.conf", "server {}\n")
    put(root, "/etc/nginx/conf.d/b.conf", "server {}\n")
    put(root, "/etc/nginx/conf.d/sub/c.conf", "server {}\n")  # glob(3): '*' does not cross '/'
    put(root, "/etc/nginx/modules-enabled/50-mod.conf", "load_module x;\n")
    put(root, "/usr/share/nginx/modules/ngx_stream_module.so", "\0ELF")
    put(root, "/var/www/html/index.html", "hi\n")
    put(root, "/etc/ssl/site.pem", "pem\n")
    edges, unknowns = run(root, "/etc/nginx/nginx.conf", opened)
    got = {e.dst for e in edges}
    assert {"/etc/nginx/mime.types", "/etc/nginx/conf.d/a.conf", "/etc/nginx/conf.d/b.conf",
            "/etc/nginx/modules-enabled/50-mod.conf", "/usr/share/nginx/modules/ngx_stream_module.so",
            "/var/www/html", "/var/www/html/index.html", "/etc/ssl/site.pem"} == got
    assert all(e.kind == "config" and e.src == "/etc/nginx/nginx.conf" for e in edges)
    assert any(e.evidence == "line 6: include mime.types" for e in edges)
    reasons = [u.reason for u in unknowns]
    assert any("include missing.conf: included file not found" in r for r in reasons)
    assert any("path with a variable" in r for r in reasons)


def test_lighttpd_include_and_include_shell(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, "/etc/lighttpd/lighttpd.conf", (
        'server.document-root = "/var/www/html"\n'
        '# include "commented.conf"\n'
        'include_shell "/usr/share/lighttpd/create-mime.conf.pl"\n'
        'include "/etc/lighttpd/conf-enabled/*.conf"\n'
        'include "local.conf"\n'
    ))
    put(root, "/etc/lighttpd/conf-enabled/10-fastcgi.conf", 'server.modules += ("mod_fastcgi")\n')
    put(root, "/etc/lighttpd/local.conf", "\n")
    put(root, "/usr/share/lighttpd/create-mime.conf.pl", "#!/usr/bin/perl\n")
    put(root, "/var/www/html/index.html", "hi\n")
    edges, unknowns = run(root, "/etc/lighttpd/lighttpd.conf", opened)
    assert {e.dst for e in edges} == {
        "/etc/lighttpd/conf-enabled/10-fastcgi.conf", "/etc/lighttpd/local.conf",
        "/usr/share/lighttpd/create-mime.conf.pl", "/var/www/html", "/var/www/html/index.html"}
    assert len(unknowns) == 1 and "include_shell" in unknowns[0].reason


def test_glob_exact_does_not_cross_slash(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, "/etc/x/a.conf", "")
    put(root, "/etc/x/d/b.conf", "")
    put(root, "/etc/x/.hidden.conf", "")
    img = load_image(f"rootfs:{root}")
    opened.append(img)
    assert img.rootfs.glob3("/etc/x/*.conf") == ["/etc/x/a.conf"]
    assert img.rootfs.glob3("/etc/*/d/*.conf") == ["/etc/x/d/b.conf"]
