"""The benchmark images: Debian packages, app files and an OCI config each, plus a probe spec.

Servers listen on 127.0.0.1 high ports so the images run with `--network host` (issue 4).
Probe specs follow slim's CLI contract: `http:PORT[/PATH]`, `tcp:PORT[:SEND[:EXPECT]]` (SEND and
EXPECT use Python string escapes such as `\\r\\n`), `cmd:ARGS` (run the image with these args).
"""

from __future__ import annotations

from dataclasses import dataclass

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
