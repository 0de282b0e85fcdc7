"""Ruby: `$LOAD_PATH` and the gem directories computed from the image, and the files each Ruby
source loads by literal name.

The load path is rebuilt the way Ruby and RubyGems build it, from the IMAGE:

* the interpreter's RbConfig directories (`rbconfig.rb` lives in `archdir`; its
  `CONFIG["ruby_version"]` names the version): site, vendor, rubylib and arch directories, for
  the /usr (Debian), /usr/local (official images, source builds) and /opt prefixes; `-I DIR`
  arguments and `RUBYLIB` from the image Env come first (ruby(1));
* RubyGems' `Gem.path`: `GEM_HOME`/`GEM_PATH`/`BUNDLE_PATH` from the Env, then the default gem
  directories (`/var/lib/gems/X`, `/usr/local/lib/ruby/gems/X`, `/usr/lib/ruby/gems/X`,
  `/usr/share/rubygems-integration/{X,all}`, `/usr/local/bundle`), and an app's
  `.bundle/config` BUNDLE_PATH. Each gem's `require_paths` (from its gemspec, `lib` by default)
  can satisfy a `require` as RubyGems' `Kernel#require` does when `$LOAD_PATH` misses.

Loads are found in the source: `require`, `require_relative`, `load` and `autoload :X, "…"`
with a literal string anywhere in a file, the same with `File.expand_path("x", __dir__)` (or
`("../x", __FILE__)`), plus RubyGems' `load Gem.activate_bin_path("g", "x")` stubs. An
interpolated `require "dir/#{x}"` keeps every file of the literal directory that matches. A `require` resolves to `NAME.rb` or the extension `NAME.so` in the first directory that
has one. A dynamic require (`require name`) is reported as an Unknown.

When the interpreter is kept, what it loads before any user code comes along: `rbconfig.rb`,
every encoding and transcoder (`enc/**`, loaded lazily by name), RubyGems (its files through
its requires and `autoload … File.expand_path` lines, its data whole), the gemspecs
RubyGems reads at start (every `specifications/**/*.gemspec` of every gem directory), and the
gems Ruby requires at boot (did_you_mean, error_highlight, syntax_suggest).
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath, under

log = logging.getLogger(__name__)

MAX_SOURCE = 4 << 20
_INTERP_RE = re.compile(r"^(j?ruby)(\d(\.\d+)*)?$")
_VERSION_DIR = re.compile(r"^\d+\.\d+\.\d+$")
PREFIXES = ("/usr", "/usr/local", "/opt/ruby")
# boot libraries whose files are found by following their requires rather than kept whole
FOLLOWED_BOOT_LIBS = frozenset({"rubygems"})
# loaded by Ruby itself at boot (gem_prelude.rb) before any user code
BOOT_LIBS = ("rubygems", "did_you_mean", "error_highlight", "syntax_suggest/core_ext",
             "bundled_gems", "monitor")

# Each pattern starts at its keyword, which must follow the start of a line, white space, `;`
# or `(` (see _after): the regex engine then skips to the keyword's first letters in C instead of
# trying a boundary at every character (5 times faster on a gem tree).
# require 'x' / require "x" / require('x'), require_relative, load, autoload :C, 'x'
_LOAD_RE = re.compile(
    r"""(require_relative|require|load|autoload\s*\(?\s*:?[A-Za-z_][\w:]*\s*,)\s*\(?\s*(['"])([^'"#{}\n]+)\2""",
    re.M)
_DYNAMIC_RE = re.compile(r"""(require|require_relative)(?![\w?!])\s*\(?\s*([A-Za-z_@$][\w.:@$]*)\s*\)?\s*$""", re.M)
# require File.expand_path("x", __dir__) / ("../x", __FILE__), autoload :C, File.expand_path(…)
_EXPAND_RE = re.compile(
    r"""(require|load|autoload\s*\(?\s*:?[A-Za-z_][\w:]*\s*,)\s*\(?\s*File\.expand_path\(\s*"""
    r"""(['"])([^'"#{}\n]+)\2\s*,\s*(__dir__|__FILE__|File\.dirname\(\s*__FILE__\s*\))\s*\)""", re.M)
# require "dir/#{name}": a literal directory, a computed file
_INTERPOLATED_RE = re.compile(r"""(require_relative|require)\s*\(?\s*"([^"\n]*?)#\{""", re.M)
_BIN_STUB_RE = re.compile(r"""Gem\.(?:activate_bin_path|bin_path)\(\s*['"]([^'"]+)['"]\s*,\s*['"]([^'"]+)['"]""")
_GEMSPEC_PATHS = re.compile(r"""require_paths\s*=\s*\[([^\]]*)\]""")


@dataclass(frozen=True)
class RubyEnv:
    """One Ruby installation of the image: its load path and gem directories."""

    interpreter: str
    version: str  # "3.1.0" (RbConfig's ruby_version), "" when unknown
    archdir: str
    load_path: tuple[str, ...]
    gem_dirs: tuple[str, ...]  # Gem.path entries that exist
    gem_lib_dirs: tuple[str, ...]  # every installed gem's require_paths, in Gem.path order


class RubyState:
    """The image's Ruby installations, computed once per run (a service of the context)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx
        self.envs: dict[str, RubyEnv | None] = {}

    def env(self, interpreter: str | None = None) -> RubyEnv | None:
        interpreter = interpreter or self.ctx.which("ruby") or ""
        if interpreter not in self.envs:
            self.envs[interpreter] = _compute_env(self.ctx, interpreter) if interpreter else None
        return self.envs[interpreter]


def _archdirs(ctx: AnalysisContext) -> list[tuple[str, str]]:
    """(archdir, ruby_version) of every rbconfig.rb under the known prefixes."""
    out = []
    for prefix in PREFIXES:
        for pattern in (f"{prefix}/lib/*/ruby/*/rbconfig.rb", f"{prefix}/lib/ruby/*/*/rbconfig.rb"):
            for path in ctx.fs.glob3(pattern):
                version = posixpath.basename(posixpath.dirname(path))
                if _VERSION_DIR.match(version):
                    out.append((posixpath.dirname(path), version))
    return out


def _ruby_dirs(ctx: AnalysisContext, version: str) -> list[str]:
    """RbConfig's site, vendor, rubylib and arch directories for every prefix, in Ruby's order."""
    out: list[str] = []
    for prefix in PREFIXES:
        lib = f"{prefix}/lib"
        triplets = [posixpath.basename(d) for d in ctx.fs.glob3(f"{lib}/*-linux*")]
        cands = [f"{prefix}/local/lib/site_ruby/{version}" if prefix == "/usr" else "",
                 f"{lib}/ruby/site_ruby/{version}", f"{lib}/site_ruby/{version}",
                 *(f"{lib}/{t}/site_ruby" for t in triplets), f"{lib}/ruby/site_ruby",
                 f"{lib}/ruby/vendor_ruby/{version}",
                 *(f"{lib}/{t}/ruby/vendor_ruby/{version}" for t in triplets),
                 f"{lib}/ruby/vendor_ruby", f"{lib}/ruby/{version}",
                 *(f"{lib}/{t}/ruby/{version}" for t in triplets),
                 *(f"{lib}/ruby/{version}/{t}" for t in triplets)]
        out += [c for c in cands if c and ctx.fs.is_dir(c) and c not in out]
    return out


def _gem_dirs(ctx: AnalysisContext, version: str) -> list[str]:
    env = ctx.config.env_dict
    wd = ctx.config.workdir or "/"
    cands: list[str] = []
    for key in ("GEM_HOME", "GEM_PATH", "BUNDLE_PATH"):
        cands += [normpath(posixpath.join(wd, p)) for p in env.get(key, "").split(":") if p]
    cands += [f"{c}/ruby/{version}" for c in list(cands)]  # BUNDLE_PATH layout
    bundle_config = normpath(posixpath.join(wd, ".bundle/config"))
    if ctx.fs.is_file(bundle_config):
        try:
            m = re.search(r'BUNDLE_PATH:\s*"?([^"\n]+)"?', ctx.fs.read_text(bundle_config))
        except SlimError:
            m = None
        if m:
            base = normpath(posixpath.join(wd, m.group(1).strip()))
            cands += [base, f"{base}/ruby/{version}"]
    cands += [f"/var/lib/gems/{version}", f"/usr/local/lib/ruby/gems/{version}",
              f"/usr/lib/ruby/gems/{version}", f"/usr/share/rubygems-integration/{version}",
              "/usr/share/rubygems-integration/all", "/usr/local/bundle",
              *ctx.fs.glob3(f"/usr/lib/*/rubygems-integration/{version}"),
              *ctx.fs.glob3(f"/usr/lib/*/ruby/gems/{version}")]
    return [d for i, d in enumerate(cands) if d not in cands[:i] and ctx.fs.is_dir(f"{d}/specifications")]


def _gem_lib_dirs(ctx: AnalysisContext, gem_dirs: Iterable[str]) -> list[str]:
    """require_paths of every gem under `gem_dirs` (gems/NAME-VERSION/<path>)."""
    out: list[str] = []
    for gem_dir in gem_dirs:
        for spec in ctx.fs.glob3(f"{gem_dir}/specifications/*.gemspec"):
            name = posixpath.basename(spec)[: -len(".gemspec")]
            paths = ["lib"]
            try:
                m = _GEMSPEC_PATHS.search(ctx.fs.read_text(spec, 1 << 16))
                if m:
                    paths = re.findall(r'"([^"]+)"', m.group(1)) or paths
            except SlimError:
                pass
            # a gem with a native extension has its built .so under extensions/ARCH/API/NAME,
            # which RubyGems puts on the load path with the gem (Gem::BasicSpecification#extension_dir)
            ext_dirs = ctx.fs.glob3(f"{gem_dir}/extensions/*/*/{name}")
            for d in [normpath(f"{gem_dir}/gems/{name}/{p}") for p in paths] + ext_dirs:
                if ctx.fs.is_dir(d) and d not in out:
                    out.append(d)
    return out


def _compute_env(ctx: AnalysisContext, interpreter: str) -> RubyEnv | None:
    found = _archdirs(ctx)
    if not found:
        return None
    # the archdir under the interpreter's own prefix wins (/usr/local/bin/ruby → /usr/local)
    prefix = posixpath.dirname(posixpath.dirname(ctx.fs.realpath(interpreter)))
    archdir, version = next(((a, v) for a, v in found if under(a, prefix)), found[0])
    env = ctx.config.env_dict
    wd = ctx.config.workdir or "/"
    load_path = [normpath(posixpath.join(wd, p)) for p in env.get("RUBYLIB", "").split(":") if p]
    load_path += [d for d in _ruby_dirs(ctx, version) if d not in load_path]
    gem_dirs = _gem_dirs(ctx, version)
    return RubyEnv(interpreter, version, archdir, tuple(load_path), tuple(gem_dirs),
                   tuple(_gem_lib_dirs(ctx, gem_dirs)))


# Features the interpreter provides itself (rb_provide in thread.c, enumerator.c, cont.c,
# rational.c, complex.c, vm.c of Ruby 2.7 to 3.3): `require 'thread'` loads no file.
BUILTIN_FEATURES = frozenset({"thread", "enumerator", "fiber", "rational", "complex", "ruby2_keywords"})


def resolve_feature(ctx: AnalysisContext, env: RubyEnv, feature: str,
                    extra: Sequence[str] = ()) -> str | None:
    """The file `require feature` loads: `$LOAD_PATH` first, then the gems' require_paths."""
    names = [feature] if feature.endswith((".rb", ".so")) else [f"{feature}.rb", f"{feature}.so"]
    if feature.startswith("/"):
        return next((n for n in names if ctx.fs.is_file(n)), None)
    for d in (*extra, *env.load_path, *env.gem_lib_dirs):
        for n in names:
            cand = normpath(f"{d}/{n}")
            if ctx.fs.is_file(cand):
                return cand
    return None


def boot_edges(ctx: AnalysisContext, env: RubyEnv) -> list[Edge]:
    """What the interpreter loads before user code (module doc)."""
    src = ctx.fs.realpath(env.interpreter)
    out: list[Edge] = [Edge(src, f"{env.archdir}/rbconfig.rb", "import", "RbConfig (ruby boot)")]
    for e in ctx.files_under(f"{env.archdir}/enc"):
        out.append(Edge(src, e.path, "import", "encodings and transcoders load lazily by name"))
    for lib in BOOT_LIBS:
        hit = resolve_feature(ctx, env, lib)
        if hit is None:
            continue
        out.append(Edge(src, hit, "import", f"ruby boot requires {lib}"))
        tree = hit[: -len(".rb")] if hit.endswith(".rb") else ""
        for e in ctx.files_under(tree) if tree else ():
            if lib in FOLLOWED_BOOT_LIBS:
                # RubyGems' own files come through its requires and autoloads (ruby_edges);
                # its data (the gem fetcher's certificates) is kept with it
                if not e.path.endswith((".rb", ".so")):
                    out.append(Edge(src, e.path, "package", f"ruby boot: data of {lib}"))
            elif e.path.endswith((".rb", ".so")):
                out.append(Edge(src, e.path, "import", f"ruby boot: {lib}"))
    for gem_dir in env.gem_dirs:
        for e in ctx.files_under(f"{gem_dir}/specifications"):
            if e.path.endswith(".gemspec"):
                out.append(Edge(src, e.path, "package", "RubyGems reads every gemspec at start"))
        # Gem::Specification#missing_extensions? stats extensions/ARCH/API/NAME/gem.build_complete:
        # without it RubyGems ignores a gem with a native extension ("its extensions are not built")
        for marker in ctx.fs.glob3(f"{gem_dir}/extensions/*/*/*/gem.build_complete"):
            out.append(Edge(src, marker, "package", "RubyGems activates a gem with a native extension "
                                                    "only when its gem.build_complete exists"))
    return out


def gem_data_edges(ctx: AnalysisContext, env: RubyEnv, path: str) -> list[Edge]:
    """A file inside a gem's require_path keeps the gem's other non-Ruby files there (data a
    library reads next to its code: templates, MIME tables)."""
    for d in env.gem_lib_dirs:
        if under(path, d):
            return [Edge(path, e.path, "package", f"data of the gem in {posixpath.dirname(d)}")
                    for e in ctx.files_under(d) if not e.path.endswith(".rb")]
    return []


_COMMENT_LINE = re.compile(r"^\s*#.*$", re.M)
_BLOCK_COMMENT = re.compile(r"^=begin\b.*?^=end\b", re.M | re.S)


def _code(source: str) -> str:
    """`source` with comment lines and =begin/=end blocks blanked (line numbers kept)."""
    def blank(m: re.Match[str]) -> str:
        return "\n" * m.group(0).count("\n")

    return _COMMENT_LINE.sub("", _BLOCK_COMMENT.sub(blank, source))


def _after(pattern: re.Pattern[str], source: str, stops: str = ";(") -> Iterator[re.Match[str]]:
    """The matches of `pattern` (as finditer finds them) that start the text or follow white
    space or a character of `stops`."""
    pos = 0
    while (m := pattern.search(source, pos)) is not None:
        at = m.start()
        if at and not (source[at - 1].isspace() or source[at - 1] in stops):
            pos = at + 1
            continue
        yield m
        pos = max(m.end(), at + 1)


def ruby_edges(ctx: AnalysisContext, env: RubyEnv, path: str, source: str,
               extra: Sequence[str] = ()) -> list[Edge | Unknown]:
    """Edges from one Ruby file to what it loads by literal name."""
    source = _code(source)
    out: list[Edge | Unknown] = []
    here = posixpath.dirname(path)
    wd = ctx.config.workdir or "/"
    for m in _after(_LOAD_RE, source):
        how, name = m.group(1).split("(")[0].split()[0].rstrip(","), m.group(3)
        line = source.count("\n", 0, m.start()) + 1
        where = f"{path}:{line}: {how} {name!r}"
        if how == "require_relative":
            target = normpath(posixpath.join(here, name))
            hit = next((c for c in (target, f"{target}.rb", f"{target}.so") if ctx.fs.is_file(c)), None)
        elif how == "load":
            hit = next((c for c in (normpath(posixpath.join(wd, name)), normpath(posixpath.join(here, name)))
                        if ctx.fs.is_file(c)), None) or resolve_feature(ctx, env, name, extra)
        else:
            hit = resolve_feature(ctx, env, name, extra)
        if hit is None and how == "require" and name.removesuffix(".rb").removesuffix(".so") in BUILTIN_FEATURES:
            continue
        if hit is None:
            if how != "autoload":  # an autoload that never triggers needs nothing
                out.append(Unknown(path, f"line {line}: {how} {name!r}: not found on $LOAD_PATH or in a gem"))
            continue
        out.extend(link_edges(ctx, path, hit, "import", where))
    for m in _after(_EXPAND_RE, source):
        how, name, anchor = m.group(1).split("(")[0].split()[0].rstrip(","), m.group(3), m.group(4)
        line = source.count("\n", 0, m.start()) + 1
        base = path if anchor == "__FILE__" else here  # expand_path("../x", __FILE__) is here/x
        target = normpath(posixpath.join(base, name))
        cands = (target,) if how == "load" else (target, f"{target}.rb", f"{target}.so")
        hit = next((c for c in cands if ctx.fs.is_file(c)), None)
        if hit is not None:
            out.extend(link_edges(ctx, path, hit, "import", f"{path}:{line}: {how} File.expand_path({name!r})"))
        elif how != "autoload":
            out.append(Unknown(path, f"line {line}: {how} File.expand_path({name!r}): not found"))
    for m in _after(_INTERPOLATED_RE, source):
        out.extend(_interpolated_edges(ctx, env, path, source.count("\n", 0, m.start()) + 1, m.group(1),
                                       m.group(2), extra))
    for m in _after(_DYNAMIC_RE, source, ";"):
        line = source.count("\n", 0, m.start()) + 1
        out.append(Unknown(path, f"line {line}: {m.group(1)} of a computed name ({m.group(2)})"))
    for gem, exe in _BIN_STUB_RE.findall(source):
        for gem_dir in env.gem_dirs:
            for bin_path in ctx.fs.glob3(f"{gem_dir}/gems/{gem}-*/*/{exe}"):
                out.extend(link_edges(ctx, path, bin_path, "exec", f"RubyGems stub runs {gem}'s {exe}"))
    return out


def _interpolated_edges(ctx: AnalysisContext, env: RubyEnv, path: str, line: int, how: str, prefix: str,
                        extra: Sequence[str]) -> list[Edge | Unknown]:
    """`require "rubygems/defaults/#{RUBY_ENGINE}"`: every Ruby file (or extension) under the
    literal directory whose name starts with the literal rest, on the load path (or next to
    the file for require_relative); an Unknown says what was kept."""
    directory, _, start = prefix.rpartition("/")
    shown = f"{how} \"{prefix}#{{…}}\""
    if not directory:
        return [Unknown(path, f"line {line}: {shown}: a computed name; nothing kept for it")]
    if how == "require_relative":
        bases = [normpath(posixpath.join(posixpath.dirname(path), directory))]
    else:
        bases = [normpath(f"{d}/{directory}") for d in (*extra, *env.load_path, *env.gem_lib_dirs)]
    found = [e.path for d in bases if ctx.fs.is_dir(d) for e in ctx.files_under(d)
             if e.path.endswith((".rb", ".so")) and posixpath.basename(e.path).startswith(start)]
    if not found:
        return [Unknown(path, f"line {line}: {shown}: a computed name; no file matches")]
    ev = f"{path}:{line}: {shown} (a computed name: every match kept)"
    out: list[Edge | Unknown] = [Unknown(path, f"line {line}: {shown}: a computed name; "
                                               f"{len(found)} matching files kept")]
    for f in sorted(set(found)):
        out.extend(link_edges(ctx, path, f, "import", ev))
    return out


_RUBY_OPTS_WITH_ARG = {"-I", "-r", "-C", "-E", "-e", "-x", "--encoding"}


def ruby_roots(ctx: AnalysisContext, argv: list[str]) -> list[Edge | Unknown]:
    """Edges from "<root>" for `ruby [-I DIR] [-r LIB] [-e CODE] script …`; [] otherwise."""
    if not argv:
        return []
    interp = argv[0] if argv[0].startswith("/") else ctx.which(argv[0])
    if not interp or not (_INTERP_RE.match(posixpath.basename(ctx.fs.realpath(interp)))
                          or _INTERP_RE.match(posixpath.basename(interp))):
        return []
    env = ctx.service(RubyState).env(interp)
    if env is None:
        return [Unknown(interp, "Ruby interpreter without a recognizable library (rbconfig.rb)")]
    wd = ctx.config.workdir or "/"
    extra: list[str] = []
    out: list[Edge | Unknown] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if a in ("-I", "-r", "-e") or (a[:2] in ("-I", "-r", "-e") and len(a) > 2):
            opt, arg = (a, value) if len(a) == 2 else (a[:2], a[2:])
            i += 2 if len(a) == 2 else 1
            if opt == "-I":
                extra.append(normpath(posixpath.join(wd, arg)))
            elif opt == "-r":
                out += [Edge(ROOT, e.dst, "entrypoint", f"ruby -r {arg}") if isinstance(e, Edge) else e
                        for e in ruby_edges(ctx, env, "<root>", f"require '{arg}'", extra)]
            else:
                out += [Edge(ROOT, e.dst, e.kind, e.evidence) if isinstance(e, Edge)
                        else Unknown(interp, f"ruby -e: {e.reason}") for e in ruby_edges(ctx, env, "<root>", arg, extra)]
                return out
            continue
        if a in _RUBY_OPTS_WITH_ARG:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        script = normpath(posixpath.join(wd, a))
        if ctx.fs.is_file(script):
            out.extend(link_edges(ctx, ROOT, script, "entrypoint", f"ruby script {a}"))
        else:
            out.append(Unknown(interp, f"ruby script {a}: not found in the image"))
        break
    return out


def _shebang_ruby(ctx: AnalysisContext, path: str) -> str | None:
    """The interpreter a `#!…ruby` line names, or None."""
    try:
        head = ctx.fs.read(path, 256)
    except SlimError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n")[0].decode("utf-8", "replace").split()
    if words and posixpath.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    if not words or not _INTERP_RE.match(posixpath.basename(words[0])):
        return None
    return words[0] if words[0].startswith("/") else ctx.which(words[0])


class RubyAnalyzer(Analyzer):
    """Ruby sources (`.rb`, `.ru`, `#!…ruby` scripts) → what they require and load; a Ruby
    interpreter binary → its boot set."""

    name = "ruby"
    capture = Capture(globs=("**/*.rb", "**/*.ru", "**/*.gemspec", "**/Gemfile",
                             "**/Gemfile.lock", "**/.bundle/config"))

    def entry_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        return ruby_roots(self.ctx, list(argv))

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file:
            return False
        if entry.path.endswith((".rb", ".ru")):
            return True
        if _INTERP_RE.match(posixpath.basename(entry.path)) and "/bin/" in entry.path:
            return True
        return (self.ctx.fs.has_content(entry.path) and not under(entry.path, "/etc")
                and _shebang_ruby(self.ctx, entry.path) is not None)

    def analyze(self, entry: FileEntry) -> list[Edge | Unknown]:
        path = entry.path
        state = self.ctx.service(RubyState)
        if _INTERP_RE.match(posixpath.basename(path)) and not path.endswith((".rb", ".ru")):
            env = state.env(path)
            return tidy(boot_edges(self.ctx, env)) if env is not None else []
        env = state.env(None if path.endswith((".rb", ".ru")) else _shebang_ruby(self.ctx, path))
        if env is None:
            return [Unknown(path, "Ruby source but no Ruby installation (rbconfig.rb) in the image")]
        try:
            source = self.ctx.fs.read(path, MAX_SOURCE).decode("utf-8", errors="replace")
        except SlimError as exc:
            return [Unknown(path, f"cannot read Ruby source: {exc}")]
        return tidy([*ruby_edges(self.ctx, env, path, source), *gem_data_edges(self.ctx, env, path)])


__all__ = ["RubyAnalyzer", "RubyEnv", "RubyState", "resolve_feature", "ruby_edges", "ruby_roots"]
