"""Process managers: supervisord programs, runit/s6 service directories, commands in scripts."""

from __future__ import annotations

from pathlib import Path

from slim.analyzers import ANALYZERS
from slim.analyzers.procman import ProcessManagerAnalyzer
from slim.analyzers.python import PythonAnalyzer
from slim.analyzers.script import ScriptAnalyzer
from slim.entrypoint import entry_roots
from slim.model import ROOT, Edge, Unknown
from tests.unit.analyzers.test_python import PY_FILES, PY_LINKS, STD, closure, context, write_tree

SUPERVISORD = """; supervisor config file
[unix_http_server]
file=/var/run/supervisor.sock   ; (the path to the socket file)

[supervisord]
logfile=/var/log/supervisor/supervisord.log ; (main log file)
childlogdir=/var/log/supervisor

[include]
files = conf.d/*.conf %(here)s/extra/*.ini
"""
HTTP = """[program:http]
command=/usr/bin/python3 -m http.server 18104 --bind 127.0.0.1 --directory /srv/data
user=nobody
stdout_logfile=/dev/stdout
"""
ECHO = """[program:echo]
command=python3 echo.py --conf %(ENV_ECHO_CONF)s
directory=/opt/echo

[program:broken]
command=/usr/bin/%(ENV_NOPE)s
"""
FILES: dict[str, str | bytes] = {
    **PY_FILES,
    f"{STD}/http/__init__.py": "",
    f"{STD}/http/server.py": "import json\n",
    "/usr/bin/supervisord": "#!/usr/bin/python3\nimport sys\n",
    "/etc/supervisor/supervisord.conf": SUPERVISORD,
    "/etc/supervisor/conf.d/http.conf": HTTP,
    "/etc/supervisor/extra/echo.ini": ECHO,
    "/etc/supervisor/conf.d/README": "not included",
    "/opt/echo/echo.py": "import json\n",
    "/opt/echo/echo.yml": "port: 1\n",
    "/srv/data/reports/2024.txt": "q4=42\n",
    "/var/log/supervisor/.keep": "",
    # a package's test fixture: looks like a configuration, no supervisord reads it
    "/usr/lib/python3/dist-packages/supervisor/tests/fixtures/x.conf": "[program:x]\ncommand=/usr/bin/python3 -m http.server\n",
}
CONFIG = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "ECHO_CONF=/opt/echo/echo.yml"],
          "Entrypoint": ["/usr/bin/supervisord"], "Cmd": ["-n"]}


def test_supervisord_programs_are_roots(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, PY_LINKS, CONFIG)
    with context(tmp_path) as ctx:
        roots = entry_roots(ctx, [cls(ctx) for cls in ANALYZERS])
        # no -c: supervisord finds /etc/supervisor/supervisord.conf (supervisor/options.py)
        assert Edge(ROOT, "/etc/supervisor/supervisord.conf", "entrypoint",
                    "supervisord reads /etc/supervisor/supervisord.conf") in roots
        keep, edges, unknowns = closure(ctx, roots, [ProcessManagerAnalyzer, PythonAnalyzer, ScriptAnalyzer])
    # includes, relative to the including file and through %(here)s
    assert {"/etc/supervisor/conf.d/http.conf", "/etc/supervisor/extra/echo.ini"} <= keep
    assert "/etc/supervisor/conf.d/README" not in keep
    # each program: its interpreter, `-m module`, its script (in `directory=`), argument files
    # (the %(ENV_X)s expansion) and the data directory it serves, whole
    assert {"/usr/bin/python3", f"{STD}/http/server.py", f"{STD}/json/__init__.py",
            "/opt/echo/echo.py", "/opt/echo/echo.yml", "/srv/data/reports/2024.txt"} <= keep
    # the log directory supervisord refuses to start without
    assert "/var/log/supervisor" in keep
    http = [e for e in edges if e.dst == "/srv/data/reports/2024.txt"]
    assert http and http[0].src == "/etc/supervisor/conf.d/http.conf"
    assert "[program:http] command" in http[0].evidence
    assert [u.reason for u in unknowns if u.path == "/etc/supervisor/extra/echo.ini"] == [
        "[program:broken] command '/usr/bin/%(ENV_NOPE)s': an expansion slim cannot make"]
    with context(tmp_path) as ctx:
        entry_roots(ctx, [cls(ctx) for cls in ANALYZERS])
        fixture = ctx.fs.stat("/usr/lib/python3/dist-packages/supervisor/tests/fixtures/x.conf")
        assert fixture is not None
        analyzer = ProcessManagerAnalyzer(ctx)
        assert analyzer.wants(fixture) and analyzer.analyze(fixture) == []


def test_explicit_configuration_and_wants(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, PY_LINKS, {**CONFIG, "Cmd": ["-n", "-c", "/etc/supervisor/supervisord.conf"]})
    with context(tmp_path) as ctx:
        roots = entry_roots(ctx, [cls(ctx) for cls in ANALYZERS])
        assert "/etc/supervisor/supervisord.conf" in {e.dst for e in roots if isinstance(e, Edge)}
        analyzer = ProcessManagerAnalyzer(ctx)
        for path, wanted in (("/etc/supervisor/conf.d/http.conf", True), ("/etc/supervisor/conf.d/README", False)):
            entry = ctx.fs.stat(path)
            assert entry is not None and analyzer.wants(entry) is wanted


def test_runit_and_s6_service_directories(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        **PY_FILES,
        "/usr/bin/runsvdir": PY_FILES["/usr/bin/python3.11"],
        "/usr/bin/s6-svscan": PY_FILES["/usr/bin/python3.11"],
        "/etc/service/web/run": "#!/bin/sh\nexec python3 -m json.decoder\n",
        "/etc/service/web/log/run": "#!/bin/sh\n",
        "/etc/service/web/supervise/lock": "",
        "/etc/s6/svc/run": "#!/bin/sh\n",
    }
    write_tree(tmp_path, {**files, "/bin/sh": files["/usr/bin/runsvdir"]}, PY_LINKS,
               {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["runsvdir", "-P", "/etc/service"]})
    with context(tmp_path) as ctx:
        roots = entry_roots(ctx, [cls(ctx) for cls in ANALYZERS])
        got = {e.dst for e in roots if isinstance(e, Edge)}
        assert {"/etc/service/web/run", "/etc/service/web/log/run"} <= got
        assert Edge(ROOT, "/etc/service/web/run", "entrypoint", "runsvdir runs run of /etc/service/web") in roots
        s6 = ProcessManagerAnalyzer(ctx).entry_roots(["/usr/bin/s6-svscan", "-t", "500", "/etc/s6"])
        assert {e.dst for e in s6 if isinstance(e, Edge)} == {"/etc/s6/svc/run"}
        missing = ProcessManagerAnalyzer(ctx).entry_roots(["/usr/bin/runsvdir", "/nowhere"])
        assert isinstance(missing[0], Unknown)
        # the run script's own command line reaches the Python analyzer: `-m json.decoder`
        entry = ctx.fs.stat("/etc/service/web/run")
        assert entry is not None
        items = list(ScriptAnalyzer(ctx).analyze(entry))
        assert f"{STD}/json/__init__.py" in {e.dst for e in items if isinstance(e, Edge)}
