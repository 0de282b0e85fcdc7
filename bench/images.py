"""The benchmark images: Debian packages, app files and an OCI config each, plus a probe spec.

Servers listen on 127.0.0.1 high ports so the images run with `--network host` (issue 4).
Probe specs follow slim's CLI contract: `http:PORT[/PATH]`, `tcp:PORT[:SEND[:EXPECT]]` (SEND and
EXPECT use Python string escapes such as `\\r\\n`), `cmd:ARGS` (run the image with these args).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

APPSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "appsrc")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The curl image fetches this page from a server the bench itself runs on 127.0.0.1.
CURL_SERVER_PORT = 18090


@dataclass(frozen=True)
class AppFile:
    """A file the image adds on top of its packages (path inside the image)."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class DeepCheck:
    """One check of a deep probe: a network probe in slim's syntax (`http:PORT/PATH` or
    `tcp:PORT:SEND:EXPECT`) and a text the HTTP body or TCP reply must contain."""

    probe: str
    expect: str = ""


@dataclass(frozen=True)
class Builder:
    """A throwaway build stage (a Dockerfile's `FROM … AS build`): a copy of the base with
    `packages`, `files` and `run` (argv lists run in its chroot); then each (SRC, DEST) of `copy`
    goes from the stage into the image, and the stage is deleted. Its toolchain never reaches
    the image."""

    packages: tuple[str, ...]
    run: tuple[tuple[str, ...], ...]
    copy: tuple[tuple[str, str], ...]
    files: tuple[AppFile, ...] = ()
    env: tuple[str, ...] = ()  # extra NAME=VALUE for the `run` steps


@dataclass(frozen=True)
class ImageSpec:
    """One benchmark image: what to install, what to add, how to run and probe it."""

    name: str
    packages: tuple[str, ...]
    config: dict[str, object]
    probe: str
    files: tuple[AppFile, ...] = ()
    # run inside the chroot after the files are added (as argv lists, run with `chroot`)
    post: tuple[tuple[str, ...], ...] = ()
    # what a probe `cmd:` must print on stdout to pass (empty: exit 0 is enough)
    expect_output: str = ""
    needs_http_server: bool = False
    description: str = ""
    # the hidden judge (bench/measure_apps.py): checks of paths nothing at start-up touches;
    # `probe` above stays the shallow one a user would give slim
    deep_probe: tuple[DeepCheck, ...] = ()
    builder: Builder | None = None


def _config(
    entrypoint: list[str],
    cmd: list[str] | None = None,
    *,
    user: str = "",
    workdir: str = "/",
    ports: tuple[str, ...] = (),
    env: tuple[str, ...] = (),
) -> dict[str, object]:
    """An OCI image config `config` object (image-spec config.md) plus the top-level fields."""
    cfg: dict[str, object] = {
        "Entrypoint": entrypoint,
        "Env": [PATH_ENV, *env],
        "WorkingDir": workdir,
    }
    if cmd:
        cfg["Cmd"] = cmd
    if user:
        cfg["User"] = user
    if ports:
        cfg["ExposedPorts"] = {p: {} for p in ports}
    return {"architecture": "amd64", "os": "linux", "config": cfg}


LIGHTTPD_CONF = """\
server.document-root = "/srv/www"
server.bind          = "127.0.0.1"
server.port          = 18080
server.errorlog      = "/dev/stderr"
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html", ".css" => "text/css", ".txt" => "text/plain" )
"""

PYTHON_APP = '''\
"""A small JSON API on the standard library only: http.server + sqlite3 + json."""
import json
import sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DB = sqlite3.connect(":memory:", check_same_thread=False)
DB.execute("CREATE TABLE visits (path TEXT, n INTEGER)")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        DB.execute("INSERT INTO visits VALUES (?, 1)", (self.path,))
        rows = DB.execute("SELECT path, SUM(n) FROM visits GROUP BY path ORDER BY path").fetchall()
        body = json.dumps({"ok": True, "visits": dict(rows)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 18081), Handler).serve_forever()
'''

PERL_SCRIPT = """\
#!/usr/bin/perl
# Summarise some numbers with core modules only.
use strict;
use warnings;
use List::Util qw(sum max min);
use POSIX qw(floor);
use Getopt::Long;
use JSON::PP;

my $n = 10;
GetOptions("n=i" => \\$n) or die "usage: report.pl [-n N]\\n";
my @xs = map { $_ * $_ } 1 .. $n;
print JSON::PP->new->canonical->encode({
    n => $n, sum => sum(@xs), max => max(@xs), min => min(@xs), mid => floor(sum(@xs) / $n),
}), "\\n";
print "report ok\\n";
"""

JAVA_APP = """\
public class Hello {
    public static void main(String[] args) {
        System.out.println("java ok " + Runtime.version());
    }
}
"""

IMAGES: dict[str, ImageSpec] = {
    spec.name: spec
    for spec in (
        ImageSpec(
            name="lighttpd",
            packages=("lighttpd",),
            files=(
                AppFile("/etc/lighttpd/bench.conf", LIGHTTPD_CONF),
                AppFile("/srv/www/index.html", "<!doctype html><title>bench</title><p>hello from lighttpd</p>\n"),
            ),
            config=_config(
                ["/usr/sbin/lighttpd", "-D", "-f", "/etc/lighttpd/bench.conf"],
                user="www-data",
                ports=("18080/tcp",),
            ),
            probe="http:18080/index.html",
            description="lighttpd serving a static page",
        ),
        ImageSpec(
            name="memcached",
            packages=("memcached",),
            config=_config(
                ["/usr/bin/memcached"],
                ["-l", "127.0.0.1", "-p", "11311", "-U", "0", "-m", "32"],
                user="memcache",
                ports=("11311/tcp",),
            ),
            probe="tcp:11311:stats\\r\\n:STAT pid",
            description="memcached",
        ),
        ImageSpec(
            name="python",
            packages=("python3",),
            files=(AppFile("/app/app.py", PYTHON_APP),),
            config=_config(
                ["/usr/bin/python3"],
                ["/app/app.py"],
                user="65534:65534",
                workdir="/app",
                ports=("18081/tcp",),
                env=("PYTHONUNBUFFERED=1", "LANG=C.UTF-8"),
            ),
            probe="http:18081/hello",
            description="python3 stdlib app (http.server + sqlite3 + json)",
        ),
        ImageSpec(
            name="perl",
            packages=("perl",),
            files=(AppFile("/app/report.pl", PERL_SCRIPT, mode=0o755),),
            config=_config(["/usr/bin/perl"], ["/app/report.pl"], user="65534:65534", workdir="/app"),
            probe="cmd:/app/report.pl -n 12",
            expect_output="report ok",
            description="perl script with core modules",
        ),
        ImageSpec(
            name="curl",
            packages=("curl", "ca-certificates"),
            config=_config(
                ["/usr/bin/curl", "-fsS"], [f"http://127.0.0.1:{CURL_SERVER_PORT}/"], user="65534:65534"
            ),
            probe=f"cmd:http://127.0.0.1:{CURL_SERVER_PORT}/",
            expect_output="bench-curl-page",
            needs_http_server=True,
            description="curl CLI fetching a page from a local server",
        ),
        ImageSpec(
            name="postgresql",
            packages=("postgresql-15",),
            post=(
                # the package's postinst made a default cluster (pg_createcluster); ours replaces it
                ("/usr/bin/pg_dropcluster", "15", "main"),
                ("mkdir", "-p", "/var/lib/postgresql/data"),
                ("chown", "postgres:postgres", "/var/lib/postgresql/data"),
                (
                    "/usr/sbin/runuser", "-u", "postgres", "--",
                    "/usr/lib/postgresql/15/bin/initdb", "-D", "/var/lib/postgresql/data",
                    "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C",
                ),
            ),
            config=_config(
                ["/usr/lib/postgresql/15/bin/postgres"],
                [
                    "-D", "/var/lib/postgresql/data", "-p", "15432",
                    "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=/tmp",
                ],
                user="postgres",
                workdir="/var/lib/postgresql",
                ports=("15432/tcp",),
                env=("PGDATA=/var/lib/postgresql/data", "LANG=C.UTF-8"),
            ),
            # SSLRequest (protocol.html "SSLRequest"): length 8, code 80877103; the server answers 'N'
            probe="tcp:15432:\\x00\\x00\\x00\\x08\\x04\\xd2\\x16\\x2f:N",
            description="postgresql 15 (initdb at build time)",
        ),
        ImageSpec(
            name="java",
            packages=("default-jre-headless",),
            files=(AppFile("/app/Hello.java", JAVA_APP),),
            config=_config(["/usr/bin/java"], ["/app/Hello.java"], user="65534:65534", workdir="/app"),
            probe="cmd:/app/Hello.java",
            expect_output="java ok",
            description="java single-file program on default-jre-headless",
        ),
    )
}

DEFAULT_IMAGES = ("lighttpd", "python", "memcached", "perl", "curl", "postgresql", "java")

# issue 2: the foundation measurement wants a 200-400 MB debootstrap image
FOUNDATION = ImageSpec(
    name="foundation",
    packages=("python3", "perl", "curl", "git", "binutils"),
    config=_config(["/bin/bash"], ["-c", "python3 --version && perl -v && curl --version"]),
    probe="cmd:",
    description="minbase + python3 perl curl git binutils (issue 2 measurement)",
)


# -- application images (issue 15 item 7; issues 14 and 16) --------------------------------------
#
# Each has a shallow probe (`probe`: what a user would give slim, one `GET /` or a TCP connect)
# and a deep probe (`deep_probe`: paths nothing at start-up touches, the hidden judge of
# bench/measure_apps.py). The app sources are real files under bench/appsrc/NAME/.


def _src(image: str, rel: str, dest: str, mode: int = 0o644) -> AppFile:
    """bench/appsrc/IMAGE/REL added to the image as DEST."""
    with open(os.path.join(APPSRC, image, rel), encoding="utf-8") as f:
        return AppFile(dest, f.read(), mode)


# PyPI pins of the venv images (pip inside the chroot, as a Dockerfile's RUN pip install)
DJANGO_PINS = ("Django==5.2.19", "gunicorn==23.0.0")
NUMPY_PINS = ("numpy==2.2.6",)

APP_SPECS = (
    ImageSpec(
        name="ruby-sinatra",
        packages=("ruby", "ruby-sinatra", "puma"),
        files=(_src("ruby-sinatra", "app.rb", "/app/app.rb"), _src("ruby-sinatra", "config.ru", "/app/config.ru")),
        config=_config(
            ["/usr/bin/puma"],
            ["--bind", "tcp://127.0.0.1:18101", "--environment", "production", "/app/config.ru"],
            user="65534:65534",
            workdir="/app",
            ports=("18101/tcp",),
            env=("LANG=C.UTF-8",),
        ),
        probe="http:18101/",
        deep_probe=(DeepCheck("http:18101/report.csv", '"beta, with comma",5'),),
        description="Sinatra on puma; the CSV route requires 'csv' inside the handler",
    ),
    ImageSpec(
        name="php-apache",
        packages=("apache2", "libapache2-mod-php"),
        files=(
            _src("php-apache", "docker-php-entrypoint", "/usr/local/bin/docker-php-entrypoint", 0o755),
            _src("php-apache", "apache2-foreground", "/usr/local/bin/apache2-foreground", 0o755),
            _src("php-apache", "ports.conf", "/etc/apache2/ports.conf"),
            _src("php-apache", "000-default.conf", "/etc/apache2/sites-available/000-default.conf"),
            _src("php-apache", "index.php", "/var/www/html/index.php"),
            _src("php-apache", "lib/report.php", "/var/www/html/lib/report.php"),
        ),
        post=(
            ("rm", "-f", "/var/www/html/index.html"),
            # as the official php:apache Dockerfile: envvars' `export X=V` become `: ${X:=V}` so
            # the image's Env can override them
            ("sed", "-ri", "s/^export ([^=]+)=(.*)$/: ${\\1:=\\2}\\nexport \\1/", "/etc/apache2/envvars"),
        ),
        config=_config(
            ["docker-php-entrypoint"],
            ["apache2-foreground"],
            workdir="/var/www/html",
            ports=("18102/tcp",),
            # /var/lock is a symlink to /run/lock, and bench images carry no /run contents
            env=("APACHE_LOCK_DIR=/run/lock/apache2",),
        ),
        probe="http:18102/",
        deep_probe=(DeepCheck("http:18102/?page=report", '"latin_bytes":5,"n":7'),),
        description="PHP 8.2 under Apache (mod_php), official-image-style entrypoint scripts; "
        "the report page includes lib/report.php and uses ctype, iconv (gconv) and json",
    ),
    ImageSpec(
        name="go-static",
        packages=("media-types", "tzdata", "ca-certificates"),
        builder=Builder(
            packages=("golang-go",),
            files=(_src("go-static", "main.go", "/src/main.go"),),
            run=(("go", "build", "-trimpath", "-ldflags=-s -w", "-o", "/out/server", "/src/main.go"),),
            copy=(("/out/server", "/usr/local/bin/server"),),
            env=("CGO_ENABLED=0", "GOCACHE=/tmp/gocache", "GOPATH=/tmp/gopath", "GOPROXY=off"),
        ),
        config=_config(["/usr/local/bin/server"], user="65534:65534", ports=("18103/tcp",)),
        probe="http:18103/",
        deep_probe=(
            DeepCheck("http:18103/deep", "odt=application/vnd.oasis.opendocument.text"),
            DeepCheck("http:18103/deep", "tz=13:00 CET"),
            DeepCheck("http:18103/deep", "certs=ok"),
        ),
        description="static Go server (CGO_ENABLED=0, built in a throwaway stage); /deep opens "
        "/etc/mime.types, zoneinfo and the CA bundle",
    ),
    ImageSpec(
        name="supervisord",
        packages=("supervisor",),
        files=(
            _src("supervisord", "http.conf", "/etc/supervisor/conf.d/http.conf"),
            _src("supervisord", "echo.conf", "/etc/supervisor/conf.d/echo.conf"),
            _src("supervisord", "echo.py", "/opt/echo/echo.py"),
            _src("supervisord", "2024.txt", "/srv/data/reports/2024.txt"),
        ),
        config=_config(
            ["/usr/bin/supervisord"],
            ["-n", "-c", "/etc/supervisor/supervisord.conf"],
            ports=("18104/tcp", "18105/tcp"),
            env=("LANG=C.UTF-8",),
        ),
        probe="http:18104/",
        deep_probe=(
            DeepCheck("http:18104/reports/2024.txt", "q4=42"),
            DeepCheck("tcp:18105:ping\\n:echo: ping", "echo: ping"),
        ),
        description="supervisord running python3 -m http.server (/srv/data) and a TCP echo server",
    ),
    ImageSpec(
        name="nginx-hooks",
        packages=("nginx", "gettext-base"),
        files=(
            _src("nginx-hooks", "docker-entrypoint.sh", "/docker-entrypoint.sh", 0o755),
            _src("nginx-hooks", "20-envsubst-on-templates.sh", "/docker-entrypoint.d/20-envsubst-on-templates.sh", 0o755),
            _src("nginx-hooks", "30-render-about.sh", "/docker-entrypoint.d/30-render-about.sh", 0o755),
            _src("nginx-hooks", "default.conf.template", "/etc/nginx/templates/default.conf.template"),
            _src("nginx-hooks", "about.html.in", "/usr/share/nginx/page-templates/about.html.in"),
            _src("nginx-hooks", "index.html", "/usr/share/nginx/html/index.html"),
            _src("nginx-hooks", "site.css", "/usr/share/nginx/html/static/css/site.css"),
        ),
        post=(("rm", "-f", "/etc/nginx/sites-enabled/default"),),
        config=_config(
            ["/docker-entrypoint.sh"],
            ["nginx", "-g", "daemon off;"],
            ports=("18106/tcp",),
            env=("NGINX_PORT=18106", "GREETING=hello"),
        ),
        probe="http:18106/",
        deep_probe=(
            DeepCheck("http:18106/generated/about.html", "hello from the start-up hook"),
            DeepCheck("http:18106/static/css/site.css", "bench-site-css"),
        ),
        description="nginx with official-image-style /docker-entrypoint.sh running "
        "/docker-entrypoint.d/*.sh hooks (envsubst template, sed-rendered page)",
    ),
    ImageSpec(
        name="django-venv",
        packages=("python3-venv",),
        files=tuple(
            _src("django-venv", rel, "/app/" + rel)
            for rel in (
                "mysite/__init__.py", "mysite/settings.py", "mysite/urls.py", "mysite/views.py",
                "mysite/wsgi.py", "templates/base.html", "templates/report.html",
            )
        ),
        post=(
            ("python3", "-m", "venv", "/opt/venv"),
            ("/opt/venv/bin/pip", "install", "--no-cache-dir", "--quiet", *DJANGO_PINS),
        ),
        config=_config(
            ["/opt/venv/bin/gunicorn"],
            ["--bind", "127.0.0.1:18107", "--workers", "1", "--chdir", "/app", "mysite.wsgi:application"],
            user="65534:65534",
            workdir="/app",
            ports=("18107/tcp",),
            env=("PYTHONUNBUFFERED=1", "LANG=C.UTF-8"),
        ),
        probe="http:18107/",
        deep_probe=(DeepCheck("http:18107/report/", "Total: 3,702"),),
        description="Django + gunicorn pip-installed into /opt/venv; /report/ renders a template "
        "and imports statistics and django.contrib.humanize lazily",
    ),
    ImageSpec(
        name="numpy-venv",
        packages=("python3-venv",),
        files=(_src("numpy-venv", "app.py", "/app/app.py"),),
        post=(
            ("python3", "-m", "venv", "/opt/venv"),
            ("/opt/venv/bin/pip", "install", "--no-cache-dir", "--quiet", *NUMPY_PINS),
        ),
        config=_config(
            ["/opt/venv/bin/python"],
            ["/app/app.py"],
            user="65534:65534",
            workdir="/app",
            ports=("18109/tcp",),
            env=("PYTHONUNBUFFERED=1", "LANG=C.UTF-8"),
        ),
        probe="http:18109/",
        deep_probe=(DeepCheck("http:18109/fft", '"peak": 4, "det": 5.0, "roots": [-3.0, 2.0]'),),
        description="numpy pip-installed into /opt/venv; /fft imports numpy.fft, numpy.linalg "
        "and numpy.polynomial inside the handler",
    ),
    ImageSpec(
        name="flask",
        packages=("python3-flask",),
        files=(
            _src("flask", "app.py", "/app/app.py"),
            _src("flask", "templates/base.html", "/app/templates/base.html"),
            _src("flask", "templates/hello.html", "/app/templates/hello.html"),
        ),
        config=_config(
            ["/usr/bin/python3"],
            ["/app/app.py"],
            user="65534:65534",
            workdir="/app",
            ports=("18108/tcp",),
            env=("PYTHONUNBUFFERED=1", "LANG=C.UTF-8"),
        ),
        probe="http:18108/",
        deep_probe=(
            DeepCheck("http:18108/hello/ada", "Hello, Ada!"),
            DeepCheck("http:18108/hello/ada", "ALPHA, BETA, GAMMA (3 items)"),
        ),
        description="Debian's python3-flask; /hello/NAME renders a Jinja template that extends another",
    ),
)

APP_IMAGES = tuple(spec.name for spec in APP_SPECS)
IMAGES.update({spec.name: spec for spec in APP_SPECS})
