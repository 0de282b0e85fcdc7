"""Perl: `use`/`require` resolved through the image's @INC; XS modules' shared objects.

@INC is rebuilt from the image, never the host: PERL5LIB (or PERLLIB) from the image Env first
(perlrun "ENVIRONMENT"), then the compiled-in directories of the image's perl, which we detect
by layout:

* Debian/Ubuntu (perl 5.X.Y, triplet T): /etc/perl, /usr/local/lib/T/perl/5.X.Y,
  /usr/local/share/perl/5.X.Y, /usr/lib/T/perl5/5.X, /usr/share/perl5, /usr/lib/T/perl-base,
  /usr/lib/T/perl/5.X, /usr/share/perl/5.X, /usr/local/lib/site_perl (`perl -V` on Debian 12).
* The official `perl` image (built with -Dprefix=/usr/local): /usr/local/lib/perl5/site_perl/5.X.Y/
  <archname>, …/site_perl/5.X.Y, …/vendor_perl/…, /usr/local/lib/perl5/5.X.Y/<archname>, …/5.X.Y.
* Alpine: /usr/local/lib/perl5/site_perl, /usr/local/share/perl5/site_perl, /usr/lib/perl5/vendor_perl,
  /usr/share/perl5/vendor_perl, /usr/lib/perl5/core_perl, /usr/share/perl5/core_perl.

`use lib 'dir'` (and `qw(...)`, `"$FindBin::Bin/lib"`) prepends to @INC for the file. A module
`Foo::Bar` is `Foo/Bar.pm` in the first @INC directory holding it; its XS part is
`auto/Foo/Bar/Bar.so` (XSLoader/DynaLoader search @INC for it), kept with the other files of
that auto directory (autosplit `.al`/`.ix`). POD (`=pod … =cut`), `__END__`/`__DATA__` and
heredoc bodies are skipped roughly; a non-literal `require $x` is an Unknown.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath, under

log = logging.getLogger(__name__)

MAX_SOURCE = 8 << 20
_VER_RE = re.compile(r"^5\.(\d+)(?:\.(\d+))?$")
# Package names that are part of the perl binary, not files.
BUILTIN_PACKAGES = frozenset({"CORE", "UNIVERSAL", "Internals", "PerlIO", "utf8::", "main"})


@dataclass(frozen=True)
class PerlEnv:
    """The image's perl @INC (without per-file `use lib`)."""

    inc: tuple[str, ...]
    version: str  # "5.36.0" or "" when unknown


def _detect_version(ctx: AnalysisContext) -> tuple[str, str, str]:
    """(full "5.X.Y", short "5.X", triplet) from the image's perl library layout."""
    fs = ctx.fs
    full = short = ""
    triplet = "x86_64-linux-gnu"
    for cand in sorted(fs.glob("/usr/lib/*-linux-gnu*/perl")) + sorted(fs.glob("/usr/lib/*-linux-musl*/perl")):
        if fs.is_dir(cand):
            triplet = cand.split("/")[3]
            for name in fs.listdir(cand):
                m = _VER_RE.match(name)
                if m and m.group(2) is not None:
                    full = name
                elif m:
                    short = name
            break
    if not full and not short:
        for base in ("/usr/share/perl", "/usr/local/lib/perl5"):
            for name in sorted(fs.listdir(base)):
                m = _VER_RE.match(name)
                if m:
                    full = name if m.group(2) is not None else full
                    short = f"5.{m.group(1)}"
    if full and not short:
        short = ".".join(full.split(".")[:2])
    if short and not full:
        full = short + ".0"
    return full, short, triplet


def perl_env(ctx: AnalysisContext) -> PerlEnv:
    """@INC of the image's perl (computed once per run: the PerlInc service)."""
    return ctx.service(PerlInc).env


class PerlInc:
    """The image's @INC, a service of the analysis context."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.env = _compute_inc(ctx)


def _compute_inc(ctx: AnalysisContext) -> PerlEnv:
    fs = ctx.fs
    env = ctx.config.env_dict
    wd = ctx.config.workdir or "/"
    inc: list[str] = []
    lib = env.get("PERL5LIB") or env.get("PERLLIB", "")
    inc += [normpath(posixpath.join(wd, p)) for p in lib.split(":") if p]
    full, short, t = _detect_version(ctx)
    candidates = [
        "/etc/perl", f"/usr/local/lib/{t}/perl/{full}", f"/usr/local/share/perl/{full}",
        f"/usr/lib/{t}/perl5/{short}", "/usr/share/perl5", f"/usr/lib/{t}/perl-base",
        f"/usr/lib/{t}/perl/{short}", f"/usr/share/perl/{short}", "/usr/local/lib/site_perl",
    ]
    for kind in ("site_perl", "vendor_perl", ""):
        base = posixpath.join("/usr/local/lib/perl5", kind) if kind else "/usr/local/lib/perl5"
        for name in sorted(fs.listdir(base)):
            if _VER_RE.match(name):
                d = posixpath.join(base, name)
                candidates += [posixpath.join(d, a) for a in sorted(fs.listdir(d))
                               if a.endswith(("-linux", "-linux-gnu", "-linux-musl")) or "-linux-" in a]
                candidates.append(d)
        if kind:
            candidates.append(base)
    candidates += ["/usr/local/share/perl5/site_perl", "/usr/lib/perl5/vendor_perl",
                   "/usr/share/perl5/vendor_perl", "/usr/lib/perl5/core_perl", "/usr/share/perl5/core_perl"]
    for c in candidates:
        if "//" not in c and not c.endswith("/") and fs.is_dir(c) and c not in inc:
            inc.append(c)
    return PerlEnv(tuple(inc), full)


# -- scanning ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PerlRef:
    """One `use`/`require`/`use lib` seen in a Perl file."""

    kind: str  # "module" | "file" | "lib" | "dynamic"
    text: str
    line: int


_HEREDOC_RE = re.compile(r"<<(~?)\s*(?:\"([A-Za-z_]\w*)\"|'([A-Za-z_]\w*)'|([A-Za-z_]\w*))")
_USE_RE = re.compile(r"^\s*(?:use|no)\s+([A-Za-z_][\w:]*)\s*(.*)$")
_REQ_RE = re.compile(
    r"\brequire\s+(?:([A-Za-z_][\w:]*)(?=\s*(?:;|$|\bif\b|\bunless\b|\bor\b|\|\||&&|\)|\}|,))"
    r"|\"([^\"$@]+)\"|'([^']+)'|(\$[\w:]+|\"[^\"]*\$[^\"]*\"))"
)
_QW_RE = re.compile(r"qw\s*[\(\[\{/<]([^\)\]\}/>]*)[\)\]\}/>]")
_STR_RE = re.compile(r"\"([^\"]*)\"|'([^']*)'")


def _strings_of(args: str) -> list[str]:
    out: list[str] = []
    for m in _QW_RE.finditer(args):
        out += m.group(1).split()
    rest = _QW_RE.sub("", args)
    for m in _STR_RE.finditer(rest):
        out.append(m.group(1) if m.group(1) is not None else m.group(2))
    return out


def scan_perl(source: str) -> list[PerlRef]:
    """`use`/`no`/`require`/`use lib`/`use parent`/`use base` references of a Perl file."""
    out: list[PerlRef] = []
    in_pod = False
    heredoc: list[tuple[str, bool]] = []
    for n, raw in enumerate(source.splitlines(), 1):
        if heredoc:
            term, indented = heredoc[0]
            if (raw.strip() if indented else raw) == term:
                heredoc.pop(0)
            continue
        if in_pod:
            if raw.startswith("=cut"):
                in_pod = False
            continue
        if raw[:1] == "=" and re.match(r"^=[a-zA-Z]", raw):
            in_pod = True
            continue
        if raw.startswith(("__END__", "__DATA__")):
            break
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if "<<" in line:
            for m in _HEREDOC_RE.finditer(line):
                term = m.group(2) or m.group(3) or m.group(4)
                heredoc.append((term, bool(m.group(1))))
        if "use" not in line and "no" not in line and "require" not in line:
            continue  # most lines: no statement below can match (_USE_RE, _REQ_RE)
        # statements start after `;`, `{` or `}` (a `use` inside a sub body counts: it runs at
        # compile time wherever it is)
        for stmt in re.split(r"[;{}]", _QW_RE.sub(lambda m: m.group(0).replace("{", "(").replace("}", ")"), line)):
            um = _USE_RE.match(stmt + ";")
            if um:
                mod, args = um.group(1), um.group(2)
                if mod == "lib":
                    out += [PerlRef("lib", s, n) for s in _strings_of(args)]
                    continue
                out.append(PerlRef("module", mod, n))
                if mod in ("parent", "base"):
                    names = [s for s in _strings_of(args) if s != "-norequire"]
                    if "-norequire" not in args:
                        out += [PerlRef("module", s, n) for s in names]
                elif mod == "if":
                    # use if COND, Module => ARGS: the module is the string after the first comma
                    parts = args.split(",", 1)
                    if len(parts) == 2:
                        ss = _strings_of(parts[1]) or re.findall(r"[A-Za-z_][\w:]*", parts[1])[:1]
                        if ss:
                            out.append(PerlRef("module", ss[0], n))
            for rm in _REQ_RE.finditer(stmt + ";"):
                if rm.group(1):
                    out.append(PerlRef("module", rm.group(1), n))
                elif rm.group(2) or rm.group(3):
                    out.append(PerlRef("file", rm.group(2) or rm.group(3), n))
                elif rm.group(4) and not re.match(r"^v?5[\d._]*$", rm.group(4)):
                    out.append(PerlRef("dynamic", rm.group(4), n))
    return out


# -- resolution ----------------------------------------------------------------------------
def resolve_perl_module(ctx: AnalysisContext, inc: Iterable[str], module: str) -> tuple[str, str] | None:
    """(inc dir, file) of `Foo::Bar` → `Foo/Bar.pm`, or None."""
    rel = module.replace("::", "/").replace("'", "/") + ".pm"
    for d in inc:
        p = posixpath.join(d, rel)
        if ctx.fs.is_file(p):
            return d, p
    return None


def xs_edges(ctx: AnalysisContext, src: str, inc: Iterable[str], module: str) -> list[Edge]:
    """`auto/Foo/Bar/Bar.so` (and autosplit files) of a module, from the first @INC dir holding it."""
    parts = module.split("::")
    auto = posixpath.join("auto", *parts)
    for d in inc:
        ad = posixpath.join(d, auto)
        if not ctx.fs.is_dir(ad):
            continue
        out: list[Edge] = []
        for name in sorted(ctx.fs.listdir(ad)):
            p = posixpath.join(ad, name)
            if ctx.fs.is_file(p):
                why = "XS module (XSLoader)" if name.endswith(".so") else "autosplit/auto file"
                out.extend(link_edges(ctx, src, p, "import", f"{why} of {module}"))
        if out:
            return out
    return []


_CORE_RE = re.compile(r"^/usr/(?:share/perl/5[\d.]*|lib/[^/]+/perl/5[\d.]*|lib/[^/]+/perl-base"
                      r"|lib/perl5/core_perl|share/perl5/core_perl|local/lib/perl5/5[\d.]*)/")


def is_core_library(path: str) -> bool:
    """Whether `path` is part of perl's own library (its probes are not the app's unknowns)."""
    return _CORE_RE.match(path) is not None


def perl_edges(ctx: AnalysisContext, path: str, source: str) -> list[Edge | Unknown]:
    """Edges from one Perl file to the modules and files it loads."""
    env = perl_env(ctx)
    script_dir = posixpath.dirname(path)
    refs = scan_perl(source)
    inc = list(env.inc)
    libs: list[str] = []
    for r in refs:
        if r.kind == "lib":
            t = r.text.replace("$FindBin::RealBin", script_dir).replace("$FindBin::Bin", script_dir)
            if "$" in t:
                continue
            d = normpath(posixpath.join(ctx.config.workdir or "/", t))
            libs.append(d)
    inc = list(dict.fromkeys([*libs, *inc, ctx.config.workdir or "/"]))
    out: list[Edge | Unknown] = []
    core = is_core_library(path)
    for r in refs:
        where = f"{path}:{r.line}"
        if r.kind == "lib":
            continue
        if r.kind == "dynamic":
            kept = ""
            head = r.text[1:].split("$", 1)[0] if r.text.startswith('"') else ""
            if "/" in head and not head.startswith("/"):
                # require "File/Spec/$module.pm": keep every module of that directory in @INC
                rel_dir = posixpath.dirname(head)
                for d in inc:
                    for name in sorted(ctx.fs.listdir(posixpath.join(d, rel_dir))):
                        f = posixpath.join(d, rel_dir, name)
                        if name.endswith((".pm", ".pl")) and ctx.fs.is_file(f):
                            out.extend(link_edges(ctx, path, f, "import", f"{where}: require {r.text}"))
                kept = f"; kept every module in {rel_dir}/"
            if not core or kept:
                out.append(Unknown(path, f"line {r.line}: require {r.text}: not a literal module{kept}"))
            continue
        if r.kind == "file":
            rel = r.text
            cands = [normpath(rel)] if rel.startswith("/") else [normpath(posixpath.join(d, rel)) for d in inc]
            hit = next((c for c in cands if ctx.fs.is_file(c)), None)
            if hit:
                out.extend(link_edges(ctx, path, hit, "import", f"{where}: require {rel!r}"))
            else:
                out.append(Unknown(path, f"line {r.line}: require {rel!r}: not found in @INC"))
            continue
        mod = r.text
        if mod in BUILTIN_PACKAGES or re.match(r"^v?5[\d._]*$", mod) or mod.endswith("::"):
            continue  # a version, a core package, or a name completed by interpolation
        found = resolve_perl_module(ctx, inc, mod)
        if found is None:
            if core:  # perl's own library probes optional and foreign-OS modules (VMS, Win32)
                log.debug("%s: line %d: %s not found (core library; not reported)", path, r.line, mod)
            else:
                out.append(Unknown(path, f"line {r.line}: use {mod}: not found in @INC"))
            continue
        out.extend(link_edges(ctx, path, found[1], "import", f"{where}: use {mod}"))
        out.extend(xs_edges(ctx, found[1], inc, mod))
    return out


def _shebang_perl(ctx: AnalysisContext, path: str) -> bool:
    try:
        head = ctx.fs.read(path, 128)
    except (SlimError, OSError):
        return False
    return head.startswith(b"#!") and b"perl" in head.split(b"\n")[0]


def perl_roots(ctx: AnalysisContext, argv: list[str]) -> list[Edge | Unknown]:
    """Edges from "<root>" for `perl [-Idir] [-MModule] script.pl`."""
    if not argv:
        return []
    prog = argv[0] if argv[0].startswith("/") else ctx.which(argv[0])
    if not prog or not any(n.startswith("perl") for n in (posixpath.basename(ctx.fs.realpath(prog)),
                                                          posixpath.basename(prog))):
        return []
    wd = ctx.config.workdir or "/"
    out: list[Edge | Unknown] = []
    preamble: list[str] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a.startswith("-I") and len(a) > 2:
            preamble.append(f"use lib '{a[2:]}';")
        elif a.startswith(("-M", "-m")) and len(a) > 2:
            preamble.append(f"use {a[2:].split('=')[0]};")
        elif re.match(r"^-[a-zA-Z]*[eE]$", a) and not a.startswith(("-I", "-M", "-m")) and i + 1 < len(argv):
            # -e CODE, and clustered switches ending in it (perlrun: `perl -le 'print 1'`)
            preamble.append(argv[i + 1])
            break
        elif not a.startswith("-"):
            script = normpath(posixpath.join(wd, a))
            if ctx.fs.is_file(script):
                out.extend(link_edges(ctx, ROOT, script, "entrypoint", f"perl script {a}"))
            else:
                out.append(Unknown(prog, f"perl script {a}: not found in the image"))
            break
        i += 1
    if preamble:
        for item in perl_edges(ctx, posixpath.join(wd, "-e"), "\n".join(preamble)):
            out.append(Edge(ROOT, item.dst, item.kind, item.evidence) if isinstance(item, Edge)
                       else Unknown(prog, item.reason))
    return out


class PerlAnalyzer(Analyzer):
    """Perl sources (`.pl`, `.pm`, `#!…perl`) → modules through @INC and XS shared objects."""

    name = "perl"
    capture = Capture(globs=("**/*.pm", "**/*.pl"))

    def entry_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        return perl_roots(self.ctx, list(argv))

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file:
            return False
        if entry.path.endswith((".pl", ".pm")):
            return True
        return self.ctx.fs.has_content(entry.path) and not under(entry.path, "/etc") \
            and _shebang_perl(self.ctx, entry.path)

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        try:
            data = self.ctx.fs.read(entry.path, MAX_SOURCE)
        except (SlimError, OSError) as exc:
            return [Unknown(entry.path, f"cannot read Perl source: {exc}")]
        results = perl_edges(self.ctx, entry.path, data.decode("utf-8", errors="replace"))
        return tidy(results)


__all__ = ["PerlAnalyzer", "PerlEnv", "perl_edges", "perl_env", "perl_roots", "resolve_perl_module",
           "scan_perl", "xs_edges"]
