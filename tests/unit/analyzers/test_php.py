"""PHP under Apache on a crafted Debian-style tree: httpd's active configuration, PHP's ini files
and extensions (directories found in the module's data), includes of PHP sources.

libphp8.2.so is a small C shared object carrying the directories PHP compiles in (recipe:
PHP_MODULE below, built with gcc -shared).
"""

from __future__ import annotations

from pathlib import Path

from slim.analyzers.apache import ApacheConfig, apache_directives
from slim.analyzers.config import ConfigAnalyzer
from slim.analyzers.elfdata import ElfDataAnalyzer
from slim.analyzers.php import PhpAnalyzer, include_edges, php_dirs
from slim.model import ROOT, Edge, Unknown
from tests.unit.analyzers.conftest import cc, need_gcc
from tests.unit.analyzers.test_python import ELF, closure, context, write_tree

PHP_MODULE = r"""
const char *php_dirs[] = {"/etc/php/8.2/apache2", "/etc/php/8.2/apache2/conf.d",
                          "/usr/lib/php/20220829", "/usr/share/php/8.2"};
const char *php_dir(int i) { return php_dirs[i]; }
"""
APACHE2_CONF = """# Debian's apache2.conf mentions /etc/init.d/apache2 in a comment
ServerRoot "/etc/apache2"
PidFile ${APACHE_PID_FILE}
ErrorLog ${APACHE_LOG_DIR}/error.log
IncludeOptional mods-enabled/*.load
IncludeOptional mods-enabled/*.conf
Include ports.conf
<Directory /var/www/>
\tOptions Indexes \\
\t  FollowSymLinks
</Directory>
IncludeOptional sites-enabled/*.conf
"""
FILES: dict[str, str | bytes] = {
    "/usr/sbin/apache2": ELF,
    "/etc/init.d/apache2": "#!/bin/sh\n",
    "/etc/apache2/apache2.conf": APACHE2_CONF,
    "/etc/apache2/ports.conf": "Listen 80\n",
    "/etc/apache2/envvars": ("unset HOME\n: ${APACHE_PID_FILE:=/var/run/apache2$SUFFIX/apache2.pid}\n"
                             "export APACHE_LOG_DIR=/var/log/apache2$SUFFIX\n"),
    "/etc/apache2/mods-available/php8.2.load": "LoadModule php_module /usr/lib/apache2/modules/libphp8.2.so\n",
    "/etc/apache2/mods-available/mime.conf": "TypesConfig /etc/mime.types\n",
    "/etc/apache2/mods-available/ssl.load": "LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so\n",
    "/etc/apache2/sites-available/000-default.conf": (
        "<VirtualHost *:80>\n\tDocumentRoot /var/www/html\n"
        "\tCustomLog \"|/usr/bin/rotatelogs /var/log/apache2/access.%Y 86400\" common\n</VirtualHost>\n"),
    "/usr/bin/rotatelogs": ELF,
    "/usr/lib/apache2/modules/mod_ssl.so": ELF,
    "/etc/mime.types": "text/html html\n",
    "/var/log/apache2/.keep": "",
    "/var/run/apache2/.keep": "",
    "/var/www/html/index.php": "<?php\ninclude __DIR__ . '/lib/report.php';\n",
    "/var/www/html/lib/report.php": ("<?php\nrequire_once 'Net/Util.php';\n// include 'commented.php';\n"
                                     "require_once(dirname(__FILE__) . '/helpers.inc');\n"
                                     "include '/etc/app/settings.php';\ninclude $page . '.php';\n"
                                     "include 'missing.php';\n"),
    "/var/www/html/lib/helpers.inc": "<?php\n",
    "/usr/share/php/Net/Util.php": "<?php\n",
    "/etc/app/settings.php": "<?php\n",
    "/etc/php/8.2/apache2/php.ini": "[PHP]\n; extension=gd\nauto_prepend_file = /etc/php/prepend.php\n",
    "/etc/php/prepend.php": "<?php\n",
    "/etc/php/8.2/mods-available/ctype.ini": "; priority=20\nextension=ctype.so\n",
    "/etc/php/8.2/mods-available/iconv.ini": "extension=iconv\n",
    "/etc/php/8.2/mods-available/opcache.ini": "zend_extension=opcache.so\n",
    "/etc/php/8.2/mods-available/gd.ini": "extension=gd.so\n",
    "/usr/lib/php/20220829/ctype.so": ELF,
    "/usr/lib/php/20220829/iconv.so": ELF,
    "/usr/lib/php/20220829/opcache.so": ELF,
    "/usr/lib/php/20220829/gd.so": ELF,
}
LINKS = {
    "/etc/apache2/mods-enabled/php8.2.load": "../mods-available/php8.2.load",
    "/etc/apache2/mods-enabled/mime.conf": "../mods-available/mime.conf",
    "/etc/apache2/sites-enabled/000-default.conf": "../sites-available/000-default.conf",
    "/etc/php/8.2/apache2/conf.d/20-ctype.ini": "/etc/php/8.2/mods-available/ctype.ini",
    "/etc/php/8.2/apache2/conf.d/20-iconv.ini": "/etc/php/8.2/mods-available/iconv.ini",
    "/etc/php/8.2/apache2/conf.d/10-opcache.ini": "/etc/php/8.2/mods-available/opcache.ini",
}
CONFIG = {"Env": ["PATH=/usr/sbin:/usr/bin"], "WorkingDir": "/var/www/html"}


def tree(tmp_path: Path) -> None:
    need_gcc()
    write_tree(tmp_path, FILES, LINKS, CONFIG)
    cc(tmp_path, "/usr/lib/apache2/modules/libphp8.2.so", PHP_MODULE, "-shared", "-fPIC")


def test_apache_directives_parse() -> None:
    got = apache_directives(APACHE2_CONF)
    assert (2, "serverroot", ["/etc/apache2"]) in got
    assert (8, "directory", ["/var/www/"]) in got
    assert (9, "options", ["Indexes", "FollowSymLinks"]) in got  # a continued line


def test_active_configuration(tmp_path: Path) -> None:
    tree(tmp_path)
    with context(tmp_path) as ctx:
        conf = ctx.service(ApacheConfig)
        assert "/etc/apache2/mods-available/php8.2.load" in conf.active  # through mods-enabled
        assert "/etc/apache2/mods-available/ssl.load" not in conf.active  # disabled
        assert conf.expand("${APACHE_LOG_DIR}/error.log") == "/var/log/apache2/error.log"
        analyzer = ConfigAnalyzer(ctx)
        main = ctx.fs.stat("/etc/apache2/apache2.conf")
        ssl = ctx.fs.stat("/etc/apache2/mods-available/ssl.load")
        site = ctx.fs.stat("/etc/apache2/sites-available/000-default.conf")
        assert main is not None and ssl is not None and site is not None
        assert analyzer.wants(main) and analyzer.wants(ssl)
        edges = [e for e in analyzer.analyze(main) if isinstance(e, Edge)]
        got = {e.dst for e in edges}
        assert {"/etc/apache2/ports.conf", "/etc/apache2/mods-enabled/php8.2.load",
                "/etc/apache2/mods-available/php8.2.load", "/var/run/apache2",
                "/var/log/apache2"} <= got
        assert "/etc/init.d/apache2" not in got
        assert list(analyzer.analyze(ssl)) == []  # a disabled module loads nothing
        site_edges = {e.dst for e in analyzer.analyze(site) if isinstance(e, Edge)}
        # the document root whole; the piped log's program
        assert {"/var/www/html/index.php", "/var/www/html/lib/report.php", "/usr/bin/rotatelogs"} <= site_edges


def test_php_module_configuration_and_extensions(tmp_path: Path) -> None:
    tree(tmp_path)
    with context(tmp_path) as ctx:
        conf_dirs, scan, ext = php_dirs(ctx, "/usr/lib/apache2/modules/libphp8.2.so")
        assert conf_dirs == ["/etc/php/8.2/apache2"] and scan == ["/etc/php/8.2/apache2/conf.d"]
        assert ext == "/usr/lib/php/20220829"
        roots = [Edge(ROOT, "/usr/sbin/apache2", "entrypoint", "argv[0]"),
                 Edge(ROOT, "/etc/apache2/apache2.conf", "rule", "apache2")]
        keep, _edges, unknowns = closure(ctx, roots, [ConfigAnalyzer, PhpAnalyzer, ElfDataAnalyzer])
    assert {"/usr/lib/apache2/modules/libphp8.2.so", "/etc/php/8.2/apache2/php.ini",
            "/etc/php/prepend.php", "/etc/php/8.2/mods-available/ctype.ini",
            "/usr/lib/php/20220829/ctype.so", "/usr/lib/php/20220829/iconv.so",  # extension=NAME
            "/usr/lib/php/20220829/opcache.so", "/etc/mime.types",
            "/var/www/html/lib/helpers.inc", "/usr/share/php/Net/Util.php"} <= keep
    for dropped in ("/usr/lib/php/20220829/gd.so", "/usr/lib/apache2/modules/mod_ssl.so"):
        assert dropped not in keep, dropped
    assert not [u for u in unknowns if "extension" in u.reason or "LoadModule" in u.reason.lower()]


def test_php_includes(tmp_path: Path) -> None:
    tree(tmp_path)
    with context(tmp_path) as ctx:
        path = "/var/www/html/lib/report.php"
        items = include_edges(ctx, path, FILES[path])  # type: ignore[arg-type]
    got = {e.dst for e in items if isinstance(e, Edge)}
    assert got == {"/usr/share/php/Net/Util.php", "/var/www/html/lib/helpers.inc", "/etc/app/settings.php"}
    assert sorted(u.reason for u in items if isinstance(u, Unknown)) == [
        "line 6: include of a computed path", "line 7: include 'missing.php': not found"]


def test_php_command_lines(tmp_path: Path) -> None:
    files = {**FILES, "/usr/bin/php8.2": ELF, "/srv/site/index.php": "<?php\n", "/srv/site/css/a.css": "",
             "/app/cli.php": "<?php\n"}
    write_tree(tmp_path, files, {**LINKS, "/usr/bin/php": "php8.2"}, {**CONFIG, "WorkingDir": "/app"})
    with context(tmp_path) as ctx:
        analyzer = PhpAnalyzer(ctx)
        served = analyzer.entry_roots(["/usr/bin/php", "-S", "0.0.0.0:80", "-t", "/srv/site"])
        assert {"/srv/site/index.php", "/srv/site/css/a.css"} <= {e.dst for e in served if isinstance(e, Edge)}
        script = analyzer.entry_roots(["/usr/bin/php", "-d", "memory_limit=1G", "cli.php"])
        assert [e.dst for e in script if isinstance(e, Edge)] == ["/app/cli.php"]
        assert analyzer.entry_roots(["/usr/bin/sed", "x"]) == []
