"""Entrypoint roots: wrappers, entrypoint scripts that run "$@", hook directories, argument files."""

from __future__ import annotations

from pathlib import Path

from slim.analyzers import ANALYZERS
from slim.analyzers.commands import argument_paths, find_roots, is_data_dir, run_parts_dir, unwrap
from slim.analyzers.script import ScriptAnalyzer, runs_arguments
from slim.entrypoint import entry_roots
from slim.model import ROOT, Edge, Unknown
from tests.unit.analyzers.test_python import ELF, context, write_tree

PATH = ["PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin"]
BASE: dict[str, str | bytes] = {
    "/usr/bin/sh": ELF, "/usr/bin/bash": ELF, "/usr/bin/sed": ELF, "/usr/bin/find": ELF,
    "/usr/bin/sort": ELF, "/usr/bin/tini": ELF, "/usr/sbin/gosu": ELF, "/usr/bin/setpriv": ELF,
    "/usr/bin/run-parts": ELF, "/usr/sbin/apache2": ELF, "/usr/sbin/nginx": ELF,
    "/etc/shells": "/bin/sh\n",
}
LINKS = {"/bin": "usr/bin"}

PHP_ENTRY = """#!/bin/sh
set -e
# first arg is `-f` or `--some-option`
if [ "${1#-}" != "$1" ]; then
\tset -- apache2-foreground "$@"
fi
exec "$@"
"""
FOREGROUND = "#!/bin/bash\nset -e\nexec apache2 -DFOREGROUND \"$@\"\n"
NGINX_ENTRY = """#!/bin/sh
if [ "$1" = "nginx" ]; then
    find "/docker-entrypoint.d/" -follow -type f -print | sort -V | while read -r f; do
        case "$f" in
            *.envsh) . "$f" ;;
            *.sh) "$f" ;;
        esac
    done
fi
exec "$@"
"""
HOOK = "#!/bin/sh\nsed -e s/a/b/ /usr/share/app/page.in > /usr/share/nginx/html/page.html\n"


def roots(tmp_path: Path, config: dict, files: dict[str, str | bytes]) -> list[Edge | Unknown]:
    write_tree(tmp_path, {**BASE, **files}, LINKS, {"Env": PATH, **config})
    with context(tmp_path) as ctx:
        return entry_roots(ctx, [cls(ctx) for cls in ANALYZERS])


def dsts(items: list[Edge | Unknown]) -> set[str]:
    return {i.dst for i in items if isinstance(i, Edge)}


def test_unwrap_wrappers() -> None:
    assert unwrap("tini", ["-s", "-g", "--", "app", "-x"]) == ["app", "-x"]
    assert unwrap("/usr/sbin/gosu", ["www-data", "apache2", "-X"]) == ["apache2", "-X"]
    assert unwrap("env", ["-i", "A=1", "-u", "B", "prog"]) == ["prog"]
    assert unwrap("env", ["-S", "prog --flag", "x"]) == ["prog", "--flag", "x"]
    assert unwrap("setpriv", ["--reuid", "1000", "--regid=1000", "--init-groups", "app"]) == ["app"]
    assert unwrap("dumb-init", ["--single-child", "--", "app"]) == ["app"]
    assert unwrap("nginx", ["-g", "daemon off;"]) is None


def test_command_line_word_helpers() -> None:
    assert run_parts_dir(["--report", "-u", "022", "/etc/hooks.d"]) == "/etc/hooks.d"
    assert run_parts_dir(["--list"]) is None
    assert find_roots(["-L", "/hooks", "/more", "-type", "f", "-exec", "{}", ";"]) == (["/hooks", "/more"], True)
    assert find_roots(["/d", "-name", "*.sh", "-exec", "chmod", "+x", "{}", ";"]) == (["/d"], False)
    assert argument_paths("--config=/etc/app.yml") == ["/etc/app.yml"]
    assert argument_paths("-v") == [] and argument_paths("/etc/*.conf") == [] and argument_paths("$X") == []
    assert argument_paths("notes.txt", relative=False) == [] and argument_paths("conf/a.ini", relative=False) == ["conf/a.ini"]
    assert is_data_dir("/srv/data") and is_data_dir("/docker-entrypoint.d") and is_data_dir("/etc/app")
    for system in ("/", "/etc", "/var", "/usr/share/nginx/html", "/tmp/x", "/lib/x"):
        assert not is_data_dir(system), system


def test_entrypoint_running_its_arguments_makes_cmd_a_root(tmp_path: Path) -> None:
    """docker-php-entrypoint + apache2-foreground: `exec "$@"` runs the Cmd, found on PATH."""
    files = {"/usr/local/bin/docker-php-entrypoint": PHP_ENTRY, "/usr/local/bin/apache2-foreground": FOREGROUND}
    got = roots(tmp_path, {"Entrypoint": ["docker-php-entrypoint"], "Cmd": ["apache2-foreground"]}, files)
    assert Edge(ROOT, "/usr/local/bin/apache2-foreground", "entrypoint", "argv[1] apache2-foreground") in got
    assert not [u for u in got if isinstance(u, Unknown)]
    with context(tmp_path) as ctx:
        run = runs_arguments(ctx, "/usr/local/bin/docker-php-entrypoint")
        assert run is not None and run.index == 1 and run.prepended == ("apache2-foreground",)
        assert runs_arguments(ctx, "/usr/bin/sed") is None
        # the script's own "$@" is no Unknown when it is the entrypoint: the Cmd was followed
        entry = ctx.fs.stat("/usr/local/bin/docker-php-entrypoint")
        assert entry is not None
        assert not [u for u in ScriptAnalyzer(ctx).analyze(entry) if isinstance(u, Unknown)]


def test_options_only_cmd_runs_the_prepended_program(tmp_path: Path) -> None:
    files = {"/usr/local/bin/docker-php-entrypoint": PHP_ENTRY, "/usr/local/bin/apache2-foreground": FOREGROUND}
    got = roots(tmp_path, {"Entrypoint": ["docker-php-entrypoint"], "Cmd": ["-DFOREGROUND"]}, files)
    assert "/usr/local/bin/apache2-foreground" in dsts(got)


def test_wrappers_in_argv_are_looked_through(tmp_path: Path) -> None:
    got = roots(tmp_path, {"Entrypoint": ["tini", "--", "gosu", "www", "setpriv", "--reuid=1", "nginx"],
                           "Cmd": ["-c", "/etc/shells"]}, {})
    assert {"/usr/bin/tini", "/usr/sbin/gosu", "/usr/bin/setpriv", "/usr/sbin/nginx", "/etc/shells"} <= dsts(got)
    assert Edge(ROOT, "/usr/sbin/nginx", "entrypoint", "argv[6] nginx") in got


def test_sh_c_arguments_name_files(tmp_path: Path) -> None:
    """Item 5: `sort -r /etc/shells` inside `sh -c` keeps /etc/shells, as top-level argv does."""
    got = roots(tmp_path, {"Cmd": ["sh", "-c", "sort -r /etc/shells && sed -n p /nonexistent"]}, {})
    assert {"/usr/bin/sort", "/usr/bin/sed", "/etc/shells"} <= dsts(got)
    assert all(e.src == ROOT for e in got if isinstance(e, Edge))


def test_data_directory_argument_is_kept_whole(tmp_path: Path) -> None:
    files = {"/srv/data/reports/2024.txt": "q4=42", "/srv/data/index.txt": "x",
             "/usr/share/doc/x/README": "doc"}
    got = roots(tmp_path, {"Cmd": ["sed", "--directory", "/srv/data", "/usr/share/doc/x"]}, files)
    assert {"/srv/data", "/srv/data/reports/2024.txt", "/srv/data/index.txt", "/usr/share/doc/x"} <= dsts(got)
    assert "/usr/share/doc/x/README" not in dsts(got)  # a system directory is kept alone


def test_hook_directory_of_an_official_style_entrypoint(tmp_path: Path) -> None:
    files = {"/docker-entrypoint.sh": NGINX_ENTRY, "/docker-entrypoint.d/30-page.sh": HOOK,
             "/docker-entrypoint.d/10-env.envsh": "export A=1\n", "/usr/share/app/page.in": "@X@",
             "/usr/share/nginx/html/page.html": ""}
    write_tree(tmp_path, {**BASE, **files}, LINKS,
               {"Env": PATH, "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"]})
    with context(tmp_path) as ctx:
        got = entry_roots(ctx, [cls(ctx) for cls in ANALYZERS])
        assert {"/docker-entrypoint.sh", "/usr/sbin/nginx"} <= dsts(got)
        entry = ctx.fs.stat("/docker-entrypoint.sh")
        assert entry is not None
        items = list(ScriptAnalyzer(ctx).analyze(entry))
        hooks = {e.dst for e in items if isinstance(e, Edge) and e.kind == "exec"}
        assert {"/docker-entrypoint.d/30-page.sh", "/docker-entrypoint.d/10-env.envsh"} <= hooks
        # "$f" and . "$f" are explained by the hook directory; "$@" by the Cmd
        assert not [u for u in items if isinstance(u, Unknown)], items
        hook = ctx.fs.stat("/docker-entrypoint.d/30-page.sh")
        assert hook is not None
        from_hook = {e.dst for e in ScriptAnalyzer(ctx).analyze(hook) if isinstance(e, Edge)}
        # the template the hook reads; the page it writes (a redirection target) is not kept
        assert "/usr/share/app/page.in" in from_hook and "/usr/share/nginx/html/page.html" not in from_hook


def test_for_loop_and_run_parts_hooks(tmp_path: Path) -> None:
    script = ("#!/bin/sh\nfor f in /etc/app/init.d/*.sh; do\n  . \"$f\"\ndone\n"
              "run-parts --exit-on-error /etc/app/boot.d\n")
    files = {"/entry.sh": script, "/etc/app/init.d/a.sh": "", "/etc/app/init.d/b.txt": "",
             "/etc/app/boot.d/01-x": "#!/bin/sh\n"}
    write_tree(tmp_path, {**BASE, **files}, LINKS, {"Env": PATH, "Entrypoint": ["/entry.sh"]})
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/entry.sh")
        assert entry is not None
        items = list(ScriptAnalyzer(ctx).analyze(entry))
        got = {e.dst for e in items if isinstance(e, Edge)}
        assert {"/etc/app/init.d/a.sh", "/etc/app/boot.d/01-x", "/usr/bin/run-parts"} <= got
        assert "/etc/app/init.d/b.txt" not in got  # the glob says *.sh
        assert not [u for u in items if isinstance(u, Unknown)]


def test_variable_runs_without_a_hook_directory_stay_unknown(tmp_path: Path) -> None:
    write_tree(tmp_path, {**BASE, "/entry.sh": "#!/bin/sh\nprog=$1\n\"$prog\"\n"}, LINKS, {"Env": PATH})
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/entry.sh")
        assert entry is not None
        unknowns = [u for u in ScriptAnalyzer(ctx).analyze(entry) if isinstance(u, Unknown)]
        assert [u.reason for u in unknowns] == ["line 3: dynamic command '$prog'"]


def test_shell_variables_with_literal_values_are_followed(tmp_path: Path) -> None:
    """apache2-foreground: `: "${APACHE_ENVVARS:=$APACHE_CONFDIR/envvars}"; . "$APACHE_ENVVARS"`."""
    script = ('#!/bin/bash\n: "${APACHE_CONFDIR:=/etc/apache2}"\n: "${APACHE_ENVVARS:=$APACHE_CONFDIR/envvars}"\n'
              '. "$APACHE_ENVVARS"\nTOOL=/usr/bin/sed\n"$TOOL" -n p\nf=/usr/bin/sort\n'
              'for f in /etc/x/*; do "$f"; done\nread -r line\n"$line"\n"${RUNNER:-/usr/bin/find}" .\n')
    files = {"/entry.sh": script, "/etc/apache2/envvars": "export A=1\n"}
    write_tree(tmp_path, {**BASE, **files}, LINKS, {"Env": PATH, "Entrypoint": ["/entry.sh"]})
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/entry.sh")
        assert entry is not None
        items = list(ScriptAnalyzer(ctx).analyze(entry))
    got = {e.dst for e in items if isinstance(e, Edge)}
    assert {"/etc/apache2/envvars", "/usr/bin/sed", "/usr/bin/find"} <= got
    assert "/usr/bin/sort" not in got  # $f is the loop's variable, not the earlier value
    reasons = sorted(u.reason for u in items if isinstance(u, Unknown))
    assert reasons == ["line 10: dynamic command '$line'", "line 8: dynamic command '$f'"]


def test_command_lines_in_scripts_stop_at_computed_words(tmp_path: Path) -> None:
    """`python3 app.py "$@"` in a script: app.py is the Python analyzer's; "$@" is not a script."""
    from tests.unit.analyzers.test_python import PY_FILES, PY_LINKS, STD

    files = {**PY_FILES, "/run.sh": '#!/usr/bin/sh\nexec python3 /app/app.py "$@"\npython3 "$T"\n',
             "/usr/bin/sh": ELF}
    write_tree(tmp_path, files, PY_LINKS, {"Env": ["PATH=/usr/bin"]})
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/run.sh")
        assert entry is not None
        items = list(ScriptAnalyzer(ctx).analyze(entry))
    got = {e.dst for e in items if isinstance(e, Edge)}
    assert {"/app/app.py", f"{STD}/site.py"} <= got
    assert not [u for u in items if isinstance(u, Unknown) and "not found" in u.reason], items
