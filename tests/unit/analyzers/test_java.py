"""JavaAnalyzer / java_roots: manifests with Class-Path (jars built with zipfile), -cp, JVM home."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from slim.analyzers.java import JavaAnalyzer, java_roots, parse_manifest
from slim.model import Edge, Unknown
from tests.unit.analyzers.test_python import ELF, closure, context, write_tree

JDK = "/usr/lib/jvm/java-17-openjdk-amd64"


def make_jar(manifest: str | None, classes: tuple[str, ...] = ("Main.class",)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        if manifest is not None:
            z.writestr("META-INF/MANIFEST.MF", manifest)
        for c in classes:
            z.writestr(c, b"\xca\xfe\xba\xbe")
    return buf.getvalue()


def java_files() -> dict[str, str | bytes]:
    return {
        f"{JDK}/bin/java": ELF,
        f"{JDK}/lib/modules": b"jimage",
        f"{JDK}/lib/server/libjvm.so": ELF,
        f"{JDK}/lib/libnet.so": ELF,
        f"{JDK}/lib/src.zip": b"PK",
        f"{JDK}/release": "JAVA_VERSION=17\n",
        "/etc/java-17-openjdk/security/java.security": "x=1\n",
        "/etc/ssl/certs/java/cacerts": b"certs",
        f"{JDK}/jmods/java.base.jmod": b"jmod",
        "/app/app.jar": make_jar(
            "Manifest-Version: 1.0\r\nMain-Class: com.example.Main\r\n"
            "Class-Path: lib/dep-one.jar lib/dep-two.jar\r\n  lib/wrapped.jar classes/\r\n\r\n"
            "Name: ignored\r\nClass-Path: lib/not-main-section.jar\r\n"
        ),
        "/app/lib/dep-one.jar": make_jar("Manifest-Version: 1.0\nClass-Path: transitive.jar\n"),
        "/app/lib/dep-two.jar": make_jar(None),
        "/app/lib/wrapped.jar": make_jar(None),
        "/app/lib/transitive.jar": make_jar(None),
        "/app/lib/not-main-section.jar": make_jar(None),
        "/app/lib/unused.jar": make_jar(None),
        "/app/classes/com/example/Extra.class": b"\xca\xfe",
        "/opt/cp/a.jar": make_jar(None),
        "/opt/cp/b.JAR": make_jar(None),
        "/opt/cp/readme.txt": "x",
        "/opt/agent.jar": make_jar(None),
    }


LINKS = {
    "/usr/bin/java": "/etc/alternatives/java",
    "/etc/alternatives/java": f"{JDK}/bin/java",
    f"{JDK}/conf": "/etc/java-17-openjdk",
    f"{JDK}/lib/security/cacerts": "/etc/ssl/certs/java/cacerts",
}
CONFIG = {"WorkingDir": "/app", "Entrypoint": ["java", "-Xmx256m", "-jar", "app.jar"],
          "Env": ["PATH=/usr/bin:/bin"]}


def test_manifest_parsing() -> None:
    attrs = parse_manifest("Main-Class: a.B\nClass-Path: x.jar\n  y.jar\n\nName: z\nClass-Path: q\n")
    assert attrs == {"Main-Class": "a.B", "Class-Path": "x.jar y.jar"}


def test_jar_class_path_closure_and_jvm_home(tmp_path: Path) -> None:
    write_tree(tmp_path, java_files(), LINKS, CONFIG)
    with context(tmp_path) as ctx:
        roots = java_roots(ctx, list(ctx.config.argv))
        keep, edges, _ = closure(ctx, roots, [JavaAnalyzer])
    expected = {
        "/app/app.jar", "/app/lib/dep-one.jar", "/app/lib/dep-two.jar", "/app/lib/wrapped.jar",
        "/app/lib/transitive.jar", "/app/classes/com/example/Extra.class",
        f"{JDK}/lib/modules", f"{JDK}/lib/server/libjvm.so", f"{JDK}/lib/libnet.so", f"{JDK}/release",
        f"{JDK}/lib/security/cacerts", "/etc/ssl/certs/java/cacerts",
        "/etc/java-17-openjdk/security/java.security",
    }
    assert expected <= keep, sorted(expected - keep)
    for dropped in ("/app/lib/unused.jar", "/app/lib/not-main-section.jar", f"{JDK}/lib/src.zip",
                    f"{JDK}/jmods/java.base.jmod"):
        assert dropped not in keep
    entry = next(e for e in edges if e.dst == "/app/app.jar")
    assert "com.example.Main" in entry.evidence
    assert any(e.kind == "package" and e.evidence.startswith("JVM home") for e in edges)


def test_classpath_wildcard_agent_and_env(tmp_path: Path) -> None:
    write_tree(tmp_path, java_files(), LINKS, {**CONFIG, "Env": ["PATH=/usr/bin", "CLASSPATH=/opt/agent.jar"]})
    with context(tmp_path) as ctx:
        out = java_roots(ctx, ["java", "-javaagent:/opt/agent.jar=opt", "-cp", "/opt/cp/*:missing.jar",
                               "com.example.Main", "-cp", "ignored-app-arg"])
        dsts = {e.dst for e in out if isinstance(e, Edge)}
        assert {"/opt/cp/a.jar", "/opt/cp/b.JAR", "/opt/agent.jar"} <= dsts
        assert "/opt/cp/readme.txt" not in dsts
        assert any(isinstance(u, Unknown) and "missing.jar" in u.reason for u in out)
        # without -cp, CLASSPATH from the image Env is the class path
        env_out = java_roots(ctx, ["java", "com.example.Main"])
        assert "/opt/agent.jar" in {e.dst for e in env_out if isinstance(e, Edge)}
        assert java_roots(ctx, ["node", "x.js"]) == []
