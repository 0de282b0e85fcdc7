"""Java: the class path of a `java` command line, jar manifests, and the JVM home kept by rule.

* `java -jar X.jar`: the jar's META-INF/MANIFEST.MF `Main-Class` and `Class-Path` (space-separated
  URLs relative to the jar's directory, JAR File Specification "Main Attributes").
* `-cp`/`-classpath`/`--class-path`, `-p`/`--module-path`, else the CLASSPATH env: `:`-separated
  jars and directories; `dir/*` means every `.jar`/`.JAR` in dir (java launcher wildcard rule).
* `-javaagent:jar[=opts]` is a jar too; `@argfiles` and `JDK_JAVA_OPTIONS` are reported as Unknown.
* The JVM home is found from the java binary's real path (…/<jdk>/bin/java, or …/jre/bin/java on
  Java 8) and kept by rule: `lib/**` (libjvm.so, `lib/modules`, the native libraries the JDK
  loads by name with dlopen, `security/cacerts`), `conf/**` and `release`. `lib/src.zip`,
  `lib/ct.sym` (javac only) and `*.diz` debuginfo are left out.
"""

from __future__ import annotations

import logging
import posixpath
import zipfile
from collections.abc import Iterable, Sequence

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath, under

log = logging.getLogger(__name__)

MAX_MANIFEST = 1 << 20  # a manifest larger than this is not read further (zip bombs)
JVM_KEEP_DIRS = ("lib", "conf", "jre/lib")
JVM_KEEP_FILES = ("release",)
JVM_SKIP_SUFFIXES = ("/src.zip", "/ct.sym", ".diz")
# java launcher options whose value is the next argument (java -help, JDK 21)
_OPTS_WITH_ARG = {"--add-modules", "--limit-modules", "--add-opens", "--add-exports",
                  "--add-reads", "--patch-module", "--upgrade-module-path", "--enable-native-access",
                  "-m", "--module", "--source"}
_CP_OPTS = {"-cp", "-classpath", "--class-path", "-p", "--module-path"}


def parse_manifest(text: str) -> dict[str, str]:
    """MANIFEST.MF main attributes (continuation lines start with one space)."""
    attrs: dict[str, str] = {}
    key = ""
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw.startswith(" ") and key:
            attrs[key] += raw[1:]
            continue
        if not raw.strip():
            if attrs:
                break  # main section ends at the first blank line
            continue
        k, sep, v = raw.partition(":")
        if sep:
            key = k.strip()
            attrs[key] = v.strip()
    return attrs


class JarManifests:
    """Jar manifests read so far in one run (a service of the analysis context)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.by_jar: dict[str, dict[str, str] | None] = {}


def read_manifest(ctx: AnalysisContext, jar: str) -> dict[str, str] | None:
    """Main attributes of a jar's manifest; None when the jar is unreadable or has none."""
    seen = ctx.service(JarManifests).by_jar
    if jar in seen:
        return seen[jar]
    attrs = None
    try:
        with ctx.fs.open(jar) as f, zipfile.ZipFile(f) as z:  # seekable: only the directory is read
            name = next((n for n in z.namelist() if n.upper() == "META-INF/MANIFEST.MF"), None)
            if name is not None:
                with z.open(name) as m:
                    attrs = parse_manifest(m.read(MAX_MANIFEST).decode("utf-8", "replace"))
    except (SlimError, OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        log.debug("%s: no readable manifest: %s", jar, exc)
        attrs = None
    seen[jar] = attrs
    return attrs


def classpath_entries(ctx: AnalysisContext, src: str, value: str, base: str, why: str) -> list[Edge | Unknown]:
    """Edges for one `:`-separated class path; relative entries are taken from `base`."""
    out: list[Edge | Unknown] = []
    for item in value.split(":"):
        if not item:
            continue
        p = normpath(posixpath.join(base, item))
        if item.endswith("*") and posixpath.basename(item) == "*":
            d = posixpath.dirname(p)
            for name in sorted(ctx.fs.listdir(d)):
                if name.lower().endswith(".jar"):
                    out.extend(link_edges(ctx, src, posixpath.join(d, name), "import", f"{why} {item}"))
            continue
        if ctx.fs.is_file(p):
            out.extend(link_edges(ctx, src, p, "import", f"{why} {item}"))
        elif ctx.fs.is_dir(p):
            real = ctx.fs.realpath(p)
            for e in ctx.files_under(real):
                out.append(Edge(src, e.path, "import", f"{why} directory {item}"))
        else:
            out.append(Unknown(src if src != ROOT else p, f"{why} {item}: not found in the image"))
    return out


def jar_edges(ctx: AnalysisContext, jar: str) -> list[Edge | Unknown]:
    """A jar's manifest Class-Path entries (relative to the jar's directory)."""
    attrs = read_manifest(ctx, jar)
    if not attrs:
        return []
    out: list[Edge | Unknown] = []
    base = posixpath.dirname(jar)
    for url in attrs.get("Class-Path", "").split():
        if "://" in url and not url.startswith("file:"):
            out.append(Unknown(jar, f"Class-Path {url}: remote URL"))
            continue
        rel = url[5:] if url.startswith("file:") else url
        out.extend(classpath_entries(ctx, jar, rel, base, "manifest Class-Path"))
    return out


def jvm_home(ctx: AnalysisContext, java: str) -> str | None:
    """The JVM home of a java binary: the directory above its real `bin/`."""
    real = ctx.fs.realpath(java)
    if posixpath.basename(posixpath.dirname(real)) != "bin":
        return None
    home = posixpath.dirname(posixpath.dirname(real))
    if ctx.fs.exists(posixpath.join(home, "lib", "modules")) or \
            ctx.fs.exists(posixpath.join(home, "lib", "rt.jar")) or \
            ctx.fs.is_dir(posixpath.join(home, "lib")):
        return home
    return None


def jvm_home_edges(ctx: AnalysisContext, src: str, home: str) -> list[Edge]:
    """The JVM home kept by rule (see module doc)."""
    out: list[Edge] = []
    ev = f"JVM home {home}"
    for sub in JVM_KEEP_DIRS:
        d = posixpath.join(home, sub)
        if not ctx.fs.is_dir(d):
            continue
        for e in ctx.files_under(ctx.fs.realpath(d)):
            if e.path.endswith(JVM_SKIP_SUFFIXES):
                continue
            # conf/ and lib/security/cacerts are symlinks into /etc on Debian: keep the targets
            out.extend(link_edges(ctx, src, e.path, "package", ev))
    for name in JVM_KEEP_FILES:
        p = posixpath.join(home, name)
        if ctx.fs.is_file(p):
            out.append(Edge(src, p, "package", ev))
    return out


def java_roots(ctx: AnalysisContext, argv: list[str]) -> list[Edge | Unknown]:
    """Edges from "<root>" for a `java …` command line: jar or class path, agents, JVM home."""
    if not argv:
        return []
    java = argv[0] if argv[0].startswith("/") else ctx.which(argv[0])
    if not java or "java" not in (posixpath.basename(argv[0]), posixpath.basename(ctx.fs.realpath(java))):
        return []
    wd = ctx.config.workdir or "/"
    out: list[Edge | Unknown] = []
    home = jvm_home(ctx, java)
    if home:
        out.extend(jvm_home_edges(ctx, ROOT, home))
    else:
        out.append(Unknown(java, "java binary outside a recognizable JVM home"))
    env = ctx.config.env_dict
    for var in ("JDK_JAVA_OPTIONS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"):
        for opt in env.get(var, "").split():
            if opt.startswith("-javaagent:"):
                jar = opt[len("-javaagent:"):].split("=", 1)[0]
                out.extend(classpath_entries(ctx, ROOT, jar, wd, f"{var} -javaagent"))
    saw_cp = False
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in _CP_OPTS and i + 1 < len(argv):
            saw_cp = a in ("-cp", "-classpath", "--class-path") or saw_cp
            out.extend(classpath_entries(ctx, ROOT, argv[i + 1], wd, f"java {a}"))
            i += 2
            continue
        if a.startswith(("--class-path=", "--module-path=")):
            saw_cp = saw_cp or a.startswith("--class-path=")
            out.extend(classpath_entries(ctx, ROOT, a.split("=", 1)[1], wd, f"java {a.split('=')[0]}"))
            i += 1
            continue
        if a == "-jar" and i + 1 < len(argv):
            jar = normpath(posixpath.join(wd, argv[i + 1]))
            if not ctx.fs.is_file(jar):
                out.append(Unknown(java, f"java -jar {argv[i + 1]}: not found in the image"))
                return out
            attrs = read_manifest(ctx, jar)
            main = (attrs or {}).get("Main-Class", "")
            out.extend(link_edges(ctx, ROOT, jar, "entrypoint",
                                  f"java -jar {argv[i + 1]}" + (f" (Main-Class {main})" if main else "")))
            if not main:
                out.append(Unknown(jar, "executable jar without a Main-Class in MANIFEST.MF"))
            return out  # -jar: the jar (and its Class-Path) is the whole user class path
        if a.startswith("-javaagent:"):
            jar = a[len("-javaagent:"):].split("=", 1)[0]
            out.extend(classpath_entries(ctx, ROOT, jar, wd, "-javaagent"))
        elif a.startswith("@"):
            out.append(Unknown(java, f"java {a}: argument file not analyzed"))
        elif a in _OPTS_WITH_ARG:
            i += 2
            continue
        elif not a.startswith("-"):
            break  # the main class; the rest are application arguments
        i += 1
    if not saw_cp and env.get("CLASSPATH"):
        out.extend(classpath_entries(ctx, ROOT, env["CLASSPATH"], wd, "CLASSPATH"))
    return out


class JavaAnalyzer(Analyzer):
    """Jars → their manifest Class-Path; a kept `java` binary → its JVM home (by rule)."""

    name = "java"
    capture = Capture(globs=("**/*.jar",))

    def entry_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        return java_roots(self.ctx, list(argv))

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file:
            return False
        if entry.path.lower().endswith(".jar"):
            return True
        return posixpath.basename(entry.path) == "java" and "/bin/" in entry.path

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        if entry.path.lower().endswith(".jar"):
            if not self.ctx.fs.has_content(entry.path):
                return [Unknown(entry.path, "jar contents were not captured; Class-Path not read")]
            results = jar_edges(self.ctx, entry.path)
        else:
            home = jvm_home(self.ctx, entry.path)
            if home is None or not under(entry.path, home):
                return []
            results = list(jvm_home_edges(self.ctx, entry.path, home))
        return tidy(results)


__all__ = [
    "JavaAnalyzer",
    "classpath_entries",
    "jar_edges",
    "java_roots",
    "jvm_home",
    "parse_manifest",
    "read_manifest",
]
