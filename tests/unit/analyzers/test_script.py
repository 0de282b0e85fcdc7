"""ScriptAnalyzer and parse_sh_c on crafted rootfs: trees (no Docker, no root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slim.analyzers.base import AnalysisContext
from slim.analyzers.script import ScriptAnalyzer, parse_sh_c, parse_shebang, tokenize
from slim.image import LoadedImage
from slim.model import Edge, Unknown
from slim.pipeline import load_image

PROGRAMS = ("sh", "bash", "dash", "env", "nginx", "python3", "grep", "sed", "cat", "gosu", "ls", "busybox", "nohup")


def make_root(tmp: Path, env: list[str] | None = None, workdir: str = "/app") -> Path:
    root = tmp / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "opt/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    for prog in PROGRAMS:
        f = root / "usr/bin" / prog
        f.write_bytes(b"\x7fELF" + b"\0" * 60)
        f.chmod(0o755)
    (root / "opt/bin/opttool").write_bytes(b"\x7fELF" + b"\0" * 60)
    (root / "opt/bin/opttool").chmod(0o755)
    config = {"Env": env or ["PATH=/usr/bin:/bin"], "WorkingDir": workdir}
    (root / ".slim-config.json").write_text(json.dumps({"config": config}))
    return root


def analyze(root: Path, path: str, opened: list[LoadedImage]) -> tuple[list[Edge], list[Unknown]]:
    img = load_image(f"rootfs:{root}")
    opened.append(img)
    ctx = AnalysisContext(fs=img.rootfs, config=img.image.config)
    analyzer = ScriptAnalyzer(ctx)
    entry = img.rootfs.stat(path)
    assert entry is not None and analyzer.wants(entry)
    items = list(analyzer.analyze(entry))
    return [i for i in items if isinstance(i, Edge)], [i for i in items if isinstance(i, Unknown)]


def write(root: Path, path: str, text: str) -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    f.chmod(0o755)


def dsts(edges: list[Edge], kind: str = "exec") -> set[str]:
    return {e.dst for e in edges if e.kind == kind}


def test_parse_shebang_linux_rules() -> None:
    assert parse_shebang(b"#!/bin/sh -e\nx") == ("/bin/sh", "-e")
    assert parse_shebang(b"#! /usr/bin/env  python3 -u\n") == ("/usr/bin/env", "python3 -u")
    assert parse_shebang(b"#!\n") is None
    assert parse_shebang(b"plain") is None


def test_tokenize_operators_and_comments() -> None:
    assert tokenize("a&&b|c;d 2>/dev/null # comment") == ["a", "&&", "b", "|", "c", ";", "d", "2", ">", "/dev/null"]
    assert tokenize("echo a#b ${#x}") == ["echo", "a#b", "${#x}"]
    with pytest.raises(ValueError):
        tokenize("echo 'open")


def test_shebang_direct_and_env(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/run.py", "#!/usr/bin/env python3\nprint(1)\n")
    edges, unknowns = analyze(root, "/app/run.py", opened)
    assert dsts(edges, "shebang") == {"/usr/bin/env", "/usr/bin/python3"}
    assert all(e.evidence == "#!/usr/bin/env python3" for e in edges)
    assert not unknowns
    # not a shell: the body is not scanned
    assert not dsts(edges, "exec")


def test_env_split_string(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/s", "#!/usr/bin/env -S A=1 python3 -u\n")
    edges, _ = analyze(root, "/app/s", opened)
    assert "/usr/bin/python3" in dsts(edges, "shebang")


def test_missing_interpreter_is_unknown(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/s", "#!/usr/bin/ruby\n")
    edges, unknowns = analyze(root, "/app/s", opened)
    assert not edges
    assert "/usr/bin/ruby" in unknowns[0].reason


SCRIPT = r"""#!/bin/sh
# don't run me: a comment with a quote
set -e
. /app/lib.sh
log() { printf '%s\n' "$*"; }
function helper {
  log "x"
}
if [ $# -gt 0 ] && [ "${#1}" -gt 2 ]; then grep -q x /etc/passwd; fi
case "$1" in
  start|run)
    nginx -g 'daemon off;'
    ;;
  stop) cat /x | sed s/a/b/ ;;
  *) helper ;;
esac
for f in a b c; do ls "$f" 2>/dev/null; done
x=$(python3 -c 'print(1)')
y=`busybox true`
z=$((1 + 2))
[[ $x == 1 && $y ]] && echo ok
cat <<EOF
notacommand here
EOF
env FOO=1 dash -c true
exec gosu nobody "$@"
missingprog arg
$CMD arg
export PATH=/opt/bin:$PATH
opttool
sh -c "sed -n p; mystery"
"""


def test_shell_scan_command_positions(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/entry.sh", SCRIPT)
    write(root, "/app/lib.sh", "#!/bin/sh\n:\n")
    edges, unknowns = analyze(root, "/app/entry.sh", opened)
    assert dsts(edges, "shebang") == {"/bin/sh"}
    exec_dsts = dsts(edges)
    expected = {"/app/lib.sh", "/usr/bin/grep", "/usr/bin/nginx", "/usr/bin/cat", "/usr/bin/sed",
                "/usr/bin/ls", "/usr/bin/python3", "/usr/bin/busybox", "/usr/bin/env",
                "/usr/bin/dash", "/usr/bin/gosu", "/opt/bin/opttool", "/usr/bin/sh"}
    assert exec_dsts == expected
    evid = {e.evidence for e in edges}
    assert "line 12: nginx" in evid and "line 4: . /app/lib.sh" in evid
    reasons = sorted(u.reason for u in unknowns)
    # functions, builtins, case patterns, heredoc bodies and [[ ]] operands are not commands
    for word in ("log", "helper", "start", "run", "notacommand", "printf", "echo", "$y"):
        assert not any(repr(word) in r for r in reasons), (word, reasons)
    assert any("'missingprog' not found" in r for r in reasons)
    assert any("dynamic command '$CMD'" in r for r in reasons)
    assert any("dynamic command '$@'" in r for r in reasons)
    assert any("'mystery' not found" in r and r.startswith("line 31:") for r in reasons)
    # the fake python3 has no stdlib: the Python analyzer says so about `python3 -c` (line 17)
    assert all(u.path == "/app/entry.sh" for u in unknowns if u.path != "/usr/bin/python3")


def test_source_relative_to_script_dir_and_workdir(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path, workdir="/srv")
    write(root, "/app/bin/main.sh", "#!/bin/bash\nsource ./common.sh\n. ./work.sh\n. nowhere.sh\n")
    write(root, "/app/bin/common.sh", "x=1\n")
    write(root, "/srv/work.sh", "y=1\n")
    edges, unknowns = analyze(root, "/app/bin/main.sh", opened)
    assert dsts(edges) == {"/app/bin/common.sh", "/srv/work.sh"}
    assert [u.reason for u in unknowns] == ["line 4: sourced file 'nowhere.sh' not found"]


def test_busybox_sh_shebang(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/s", "#!/bin/busybox sh\ngrep x y\n")
    edges, _ = analyze(root, "/app/s", opened)
    assert dsts(edges) == {"/usr/bin/grep"}


def test_parse_sh_c(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    img = load_image(f"rootfs:{root}")
    opened.append(img)
    ctx = AnalysisContext(fs=img.rootfs, config=img.image.config)
    got = parse_sh_c('cd /x && exec nginx -g "daemon off;" || ls | nope; $X', ctx)
    assert ("nginx", "/usr/bin/nginx") in got and ("ls", "/usr/bin/ls") in got
    assert ("nope", "") in got and ("$X", "") in got
    assert got == sorted(got)


def test_tokenize_escaped_operators_stay_words() -> None:
    toks = tokenize(r"find . \( -type f \) -exec rm {} \; | sort")
    assert toks.count("|") == 1 and "(" not in toks and ")" not in toks and ";" not in toks
    assert toks[0] == "find" and toks[-1] == "sort"


TRICKY = r"""#!/bin/bash
. /app/funcs.sh
# a comment with a `backquote and a $(paren
grep=${GREP:-grep -E}
args=("-f" "--force")
regions=`cat /x | awk '
  BEGIN { FS = "\t" }
  { print $NF }
'`
out=$(sed -n '
  /x/p
' file)
shared_helper arg
declare -A seen; seen[/]=1
"""


def test_multiline_substitutions_arrays_and_sourced_functions(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/tricky.sh", TRICKY)
    write(root, "/app/funcs.sh", "shared_helper() {\n  :\n}\n")
    edges, unknowns = analyze(root, "/app/tricky.sh", opened)
    assert dsts(edges) == {"/app/funcs.sh", "/usr/bin/cat", "/usr/bin/sed"}
    reasons = [u.reason for u in unknowns]
    # awk's BEGIN/print, the array's "-f", "-E}" and the sourced function are no commands
    assert any("'awk' not found" in r for r in reasons)
    for word in ("BEGIN", "print", "-f", "-E}", "shared_helper", "/p"):
        assert not any(repr(word) in r for r in reasons), (word, reasons)


def test_wrappers_run_their_operand(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/w.sh", "#!/bin/sh\nnohup nginx &\nenv -u X A=1 grep x\ncommand -v ls\nexec -a name sed p\n")
    edges, unknowns = analyze(root, "/app/w.sh", opened)
    assert dsts(edges) == {"/usr/bin/nohup", "/usr/bin/nginx", "/usr/bin/env", "/usr/bin/grep", "/usr/bin/sed"}
    assert not unknowns


def test_non_shell_interpreter_body_not_scanned(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/p", "#!/usr/bin/python3\nimport os\nos.system('nowhere')\n")
    edges, unknowns = analyze(root, "/app/p", opened)
    assert [(e.dst, e.kind) for e in edges] == [("/usr/bin/python3", "shebang")] and not unknowns


def test_sourced_library_without_shebang_is_scanned(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/app/main", "#!/bin/sh\n. /etc/default/app\n. /usr/share/app/lib\nstart_app\n")
    write(root, "/etc/default/app", "start_app() { nginx; }\nDAEMON=x\ngrep -q y /z && sed p\n")
    write(root, "/usr/share/app/lib", "sed x\n")  # not a content candidate in layers; rootfs: reads all
    edges, unknowns = analyze(root, "/app/main", opened)
    assert Edge("/app/main", "/etc/default/app", "exec", "line 2: . /etc/default/app") in edges
    from_lib = {e.dst for e in edges if e.src == "/etc/default/app"}
    assert from_lib == {"/usr/bin/nginx", "/usr/bin/grep", "/usr/bin/sed"}
    assert {e.dst for e in edges if e.src == "/usr/share/app/lib"} == {"/usr/bin/sed"}
    assert not unknowns


def test_dot_sh_without_shebang_wanted(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = make_root(tmp_path)
    write(root, "/etc/profile.d/x.sh", "export PATH=/opt/bin:$PATH\nopttool\n")
    edges, unknowns = analyze(root, "/etc/profile.d/x.sh", opened)
    assert [(e.dst, e.kind) for e in edges] == [("/opt/bin/opttool", "exec")] and not unknowns


def test_busybox_applet_links(tmp_path: Path, opened: list[LoadedImage]) -> None:
    """Alpine: /bin/sh -> busybox is a shell; an applet link such as /usr/bin/ls is not."""
    root = make_root(tmp_path)
    (root / "usr/bin/sh").unlink()
    (root / "usr/bin/sh").symlink_to("busybox")
    (root / "usr/bin/ls").unlink()
    (root / "usr/bin/ls").symlink_to("busybox")
    write(root, "/app/s", "#!/bin/sh\ngrep x y\nls -c 'nginx'\nsh -c 'sed p'\n")
    edges, unknowns = analyze(root, "/app/s", opened)
    assert dsts(edges) == {"/usr/bin/grep", "/usr/bin/ls", "/usr/bin/sh", "/usr/bin/sed"}
    assert not unknowns
