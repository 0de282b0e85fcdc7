"""The application's own files, docroots named by configs, and absolute path literals."""

from __future__ import annotations

from pathlib import Path

from slim.analyzers import JavaAnalyzer, NodeAnalyzer, PerlAnalyzer, PythonAnalyzer
from slim.analyzers.app import AppConfigAnalyzer, app_roots, docroot_edges, path_literal_edges
from slim.analyzers.packages import Packages
from slim.entrypoint import language_roots
from slim.model import ROOT
from tests.unit.analyzers.test_python import ELF, closure, context, write_tree

NGINX = """
user www-data;
http {
    include /etc/nginx/mime.types;
    server {
        listen 80;
        root /var/www/site;
        location /static/ { alias "/srv/static/"; }
        location /dyn/ { root $document_root/x; }
        error_log /var/log/nginx/error.log;
        client_body_temp_path /tmp/body;
    }
}
"""

FILES: dict[str, str | bytes] = {
    "/usr/sbin/nginx": ELF,
    "/etc/nginx/nginx.conf": NGINX,
    "/etc/nginx/mime.types": "types {}\n",
    "/var/www/site/index.html": "<a href=a.html>",
    "/var/www/site/a.html": "",
    "/var/www/site/unlinked/secret-page.html": "no page links here",
    "/srv/static/logo.png": b"\x89PNG",
    "/srv/other/unrelated.txt": "",
    "/var/log/nginx/error.log": "",
    "/tmp/body": "",
    "/app/run.sh": "#!/bin/sh\nexec /usr/sbin/nginx -c /etc/nginx/nginx.conf -p /var/www\n",
    "/app/assets/data.bin": b"\x00\x01",
    "/app/README": "read me",
    "/usr/share/doc/nginx/copyright": "",
}
CONFIG = {"WorkingDir": "/app", "Entrypoint": ["/app/run.sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/bin"]}


def test_docroots_kept_whole(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, config=CONFIG)
    with context(tmp_path) as ctx:
        edges = docroot_edges(ctx, "/etc/nginx/nginx.conf", NGINX)
        dsts = {e.dst for e in edges}
        assert {"/var/www/site/index.html", "/var/www/site/unlinked/secret-page.html",
                "/srv/static/logo.png"} <= dsts
        assert "/srv/other/unrelated.txt" not in dsts
        assert all(e.kind == "config" and "nginx" in e.evidence for e in edges)
        apache = docroot_edges(ctx, "/etc/apache2/site.conf", 'DocumentRoot "/var/www/site"\n')
        assert "/var/www/site/a.html" in {e.dst for e in apache}
        lighttpd = docroot_edges(ctx, "/etc/lighttpd.conf", 'server.document-root = "/srv/static"\n')
        assert {e.dst for e in lighttpd} == {"/srv/static/logo.png"}
        arg = docroot_edges(ctx, "/app/run.sh", "exec server --docroot=/srv/static\n")
        assert {e.dst for e in arg} == {"/srv/static/logo.png"}
        # a directive starts a line or follows `{`, `}` or `;` (two on one line count)
        inline = docroot_edges(ctx, "/etc/nginx/x.conf", "location / { root /var/www/site; alias /srv/static; }")
        assert {"/var/www/site/a.html", "/srv/static/logo.png"} <= {e.dst for e in inline}
        for prose in ("myroot /srv/static;", "# root /srv/static;", "x = 'the root /srv/static;'"):
            assert docroot_edges(ctx, "/etc/nginx/x.conf", prose) == [], prose
        # Apache directives are case-insensitive, after blanks at the start of a line, in ASCII
        # texts and others (found by another route), as re.finditer of the pattern finds them
        import re

        from slim.analyzers.app import _DOCROOT_PATTERNS
        for text in ("documentroot /var/www/site\n", "<x>\n\t  DOCUMENTROOT '/var/www/site'\n",
                     "# é\n  DocumentRoot /var/www/site\n", "ALIAS /u /srv/static\nalias /v /var/www/site\n",
                     "# \u0131 alias\n\tAlias /v /srv/static\n", "x DocumentRoot /var/www/site\n",
                     "a = 1  # Alias /v /srv/static\n"):
            want = set()
            for _label, _, pat, _ in _DOCROOT_PATTERNS:
                if pat.flags & re.IGNORECASE:
                    for m in pat.finditer(text):
                        root = m.group(1)
                        want |= {e.path for e in ctx.files_under(root)}
            got = {e.dst for e in docroot_edges(ctx, "/etc/apache2/x.conf", text)}
            assert got == want, text
            assert bool(got) == (not text.startswith(("x ", "a ="))), text


def test_path_literals(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, config=CONFIG)
    with context(tmp_path) as ctx:
        dsts = {e.dst for e in path_literal_edges(ctx, "/etc/nginx/nginx.conf", NGINX)}
        assert "/etc/nginx/mime.types" in dsts and "/var/log/nginx/error.log" in dsts
        assert "/tmp/body" not in dsts  # scratch space is ignored
        assert "/var/www/site" not in dsts  # directories only as docroots
        assert not any(d.startswith("/nonexistent") for d in dsts)
        run = {e.dst for e in path_literal_edges(ctx, "/app/run.sh", FILES["/app/run.sh"])}  # type: ignore[arg-type]
        assert {"/usr/sbin/nginx", "/etc/nginx/nginx.conf"} <= run
        # docstrings of installed Python libraries are prose (Lib/subprocess.py's doctests name
        # /bin/ls); code and data strings still count, and the app's own docstrings too
        lib = ('"""Module: reads /etc/nginx/mime.types"""\n\ndef getoutput(cmd):\n'
               '    """Return output.\n\n    >>> getoutput(\'ls /usr/sbin/nginx\')\n    """\n'
               '    return open("/etc/nginx/nginx.conf")\nQ = (\n    """/var/log/nginx/error.log"""\n)\n')
        in_lib = {e.dst for e in path_literal_edges(ctx, "/usr/lib/python3.11/subprocess.py", lib)}
        assert in_lib == {"/etc/nginx/nginx.conf", "/var/log/nginx/error.log"}
        in_app = {e.dst for e in path_literal_edges(ctx, "/app/tool.py", lib)}
        assert {"/etc/nginx/mime.types", "/usr/sbin/nginx"} <= in_app
        # build records name the build machine's tools, never what the program opens
        build = 'CONFIG["INSTALL"] = "/usr/sbin/nginx -c"\nCONFIG["GREP"] = "/etc/nginx/nginx.conf"\n'
        assert path_literal_edges(ctx, "/usr/lib/x86_64-linux-gnu/ruby/3.1.0/rbconfig.rb", build) == []
        assert path_literal_edges(ctx, "/usr/lib/python3.11/_sysconfigdata__linux_x86_64-linux-gnu.py",
                                  build) == []
        assert path_literal_edges(ctx, "/app/config.rb", build)  # the same text elsewhere counts


def test_app_roots_and_switch(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, config=CONFIG)
    with context(tmp_path) as ctx:
        edges = app_roots(ctx, "/app/run.sh")
        assert {e.dst for e in edges} == {"/app/run.sh", "/app/assets/data.bin", "/app/README"}
        assert all(e.src == ROOT and e.kind == "app" and "WorkingDir /app" in e.evidence for e in edges)

        class Owners:
            packages = ["nginx"]

            def owner(self, path: str) -> list[str]:
                return ["nginx"] if path == "/app/README" else []

        ctx.provide(Packages, type("FakePackages", (), {"db": Owners(), "present": Owners()})())
        assert "/app/README" not in {e.dst for e in app_roots(ctx, None)}
    with context(tmp_path, keep_app=False) as ctx:
        assert app_roots(ctx, "/app/run.sh") == []


def test_system_workdir_is_not_an_app(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, config={**CONFIG, "WorkingDir": "/"})
    with context(tmp_path) as ctx:
        assert app_roots(ctx, "/usr/sbin/nginx") == []


def test_config_analyzer_closure(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, config=CONFIG)
    with context(tmp_path) as ctx:
        languages = [PythonAnalyzer, NodeAnalyzer, JavaAnalyzer, PerlAnalyzer]
        roots = app_roots(ctx, "/app/run.sh") + language_roots([a(ctx) for a in languages],
                                                                list(ctx.config.argv))
        keep, _, _ = closure(ctx, roots, [AppConfigAnalyzer, *languages])
    assert {"/etc/nginx/nginx.conf", "/var/www/site/unlinked/secret-page.html",
            "/srv/static/logo.png", "/etc/nginx/mime.types"} <= keep
    assert "/srv/other/unrelated.txt" not in keep and "/usr/share/doc/nginx/copyright" not in keep
