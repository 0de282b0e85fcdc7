"""DockerRunner: run the image's root in a Docker container, traced by the host's strace.

The image runs from the daemon's store: as it is when the daemon has it (same image ID), else
`docker load`ed from its docker-archive (`store`: no name, held by a `slim-lease:` tag per run
that uses it and removed with the last one), else a prepared root
is imported as a throwaway image (`docker import` of a tar of the root). Env and WorkingDir are
given at container creation, so Docker applies them as it would for the real image. The host's strace and setpriv, their shared libraries and the host's dynamic loader are
copied into a bundle directory bind-mounted read-only at /.slim-strace, and run through that
loader, so they work whatever libc the image has (or none). The log goes to a writable mount.

Isolation: Docker's defaults and no more. For a root app strace needs CAP_SYS_PTRACE
(`--cap-add SYS_PTRACE`, never `--privileged`), but the app must not have it: strace starts the
bundled setpriv, which removes it from the bounding and inheritable sets before it execs the
app. A non-root app runs as its User (Docker resolves it) with no capability added: strace
traces its own children as the same user. The container has no network but
its loopback (`--network none`, the default); probes reach the app from inside its network
namespace (`nsenter --target PID --net`, slim.tracers.probehelper). The first traced execve is
setpriv's (`skip_execs=1`); strace's own start is not traced.

Everything made — image, container, bundle and log directory — is removed in `finally`; the
imported image in a thread of its own, which the process waits for before it exits. Containers
and image names carry their owner process, and a watchdog removes them when that process is
killed (slim.reaper).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import threading
import uuid
from typing import Any, BinaryIO

from slim import reaper
from slim.errors import TraceError
from slim.fs.rootfs import RootFS
from slim.model import ImageConfig
from slim.tracers.base import TAIL_BYTES, ExecResult, ImageNotStored, Process, Runner, Session
from slim.tracers.hostroot import ResolvedUser, find_program, resolve_user
from slim.tracers.strace import STRACE_OPTIONS, StraceFollower, open_log, parse_strace
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

BUNDLE = "/.slim-strace"
OUTPUT = "/.slim-trace-out"
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)")
POLL = 0.1


def _client() -> Any:
    try:
        import docker
    except ImportError:  # pragma: no cover - the SDK is a dependency
        raise TraceError("docker runner: the Docker SDK for Python is not installed") from None
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # the SDK raises many kinds (DockerException, requests errors)
        raise TraceError(f"docker runner: no Docker daemon answers: {exc}") from None
    return client


def tool_bundle(dest: str, tools: dict[str, str]) -> dict[str, list[str]]:
    """Copy host programs (name → path), their libraries (per ldd) and the host loader into
    `dest`, bind-mounted read-only at BUNDLE. Returns each tool's in-container command prefix:
    the loader runs the tool with the bundle's libraries, so it works whatever libc the image
    has (or none). Raises TraceError."""
    libdir = os.path.join(dest, "lib")
    os.makedirs(libdir, exist_ok=True)
    loader = ""
    for name, path in tools.items():
        try:
            out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True,
                                 timeout=30).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise TraceError(f"{path}: cannot list its libraries with ldd: {exc}") from None
        for line in out.splitlines():
            m = _LDD_LINE.match(line)
            if not m:
                continue
            if "=>" not in line:  # the PT_INTERP line: /lib64/ld-linux-x86-64.so.2 (0x…)
                loader = os.path.basename(m.group(1))
                shutil.copy(m.group(1), os.path.join(dest, loader))
            else:
                shutil.copy(m.group(1), os.path.join(libdir, os.path.basename(m.group(1))))
        shutil.copy(path, os.path.join(dest, name))
    if not loader:
        raise TraceError(f"{', '.join(tools.values())}: no dynamic loader found")
    return {name: [f"{BUNDLE}/{loader}", "--library-path", f"{BUNDLE}/lib", f"{BUNDLE}/{name}"]
            for name in tools}


def _tar_root(root: str, out: BinaryIO) -> None:
    """A tar stream of the root for `docker import` (symlinks kept, never followed)."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for name in sorted(os.listdir(root)):
            tar.add(os.path.join(root, name), arcname=name, recursive=True)


def _import_root(client: Any, root: str, repository: str, tag: str) -> None:
    """`docker import` of `root`, its tar streamed to the daemon through a pipe (never written
    to disk: the root is already one copy of the image). Raises TraceError."""
    read_fd, write_fd = os.pipe()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as out:
                _tar_root(root, out)
        except BrokenPipeError:
            pass  # the daemon stopped reading: its error is the one to report
        except BaseException as exc:  # reported below, after the import saw a short stream
            failed.append(exc)

    writer = threading.Thread(target=produce, name="slim-docker-import", daemon=True)
    writer.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=1 << 20) as stream:
            client.api.import_image_from_stream(stream, repository=repository, tag=tag)
    except Exception as exc:  # the SDK raises many kinds (APIError, requests errors)
        raise TraceError(f"{root}: docker import failed: {exc}") from None
    finally:
        writer.join()
    if failed:  # the daemon may have imported the short stream: never leave that image behind
        with contextlib.suppress(Exception):
            client.images.remove(f"{repository}:{tag}", force=True)
        raise TraceError(f"{root}: docker import: the root could not be read: {failed[0]}")


def _unnamed_archive(path: str, entry: dict[str, Any], out: BinaryIO) -> None:
    """The one image of the docker-archive at `path` (its manifest `entry`) as a new
    docker-archive stream holding only its config and layers, under names slim chose, and a
    manifest without RepoTags: loading it moves no tag in the daemon, and the daemon sees no
    member of the archive but those (whose digests slim's reader checked)."""
    config, layers = entry["Config"], entry["Layers"]
    if not isinstance(config, str) or not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise ValueError("manifest.json: Config or Layers malformed")
    names = ["config.json", *(f"layer{i}.tar" for i in range(len(layers)))]
    manifest = json.dumps([{"Config": names[0], "RepoTags": None, "Layers": names[1:]}]).encode()
    with tarfile.open(path, mode="r:") as src, tarfile.open(fileobj=out, mode="w|") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for name, member_name in zip(names, [config, *layers], strict=True):
            member = src.getmember(member_name)
            f = src.extractfile(member)  # follows the archive's own links (legacy layer dirs)
            if f is None:
                raise ValueError(f"{member_name}: not a file")
            size = f.seek(0, io.SEEK_END)
            f.seek(0)
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, f)


def load_archive(client: Any, path: str, image_id: str) -> bool:
    """`docker load` of the one-image docker-archive at `path`, without its names (see
    _unnamed_archive), streamed through a pipe. True when the daemon then stores `image_id`
    (the archive's image: its ID is its config's digest, which the daemon checks the layers
    against); False, with nothing left behind, when it does not."""
    try:
        with tarfile.open(path, mode="r:") as src:
            f = src.extractfile("manifest.json")
            manifest = json.loads(f.read(1 << 20)) if f is not None else None
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return False
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        return False  # one image, as slim read it
    read_fd, write_fd = os.pipe()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as out:
                _unnamed_archive(path, manifest[0], out)
        except BrokenPipeError:
            pass
        except BaseException as exc:
            failed.append(exc)

    writer = threading.Thread(target=produce, name="slim-docker-load", daemon=True)
    writer.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=1 << 20) as stream:
            for message in client.api.load_image(stream, quiet=True) or ():
                if isinstance(message, dict) and message.get("error"):
                    log.debug("%s: docker load: %s", path, message["error"])
    except Exception as exc:  # the SDK raises many kinds (APIError, requests errors)
        log.debug("%s: docker load failed: %s", path, exc)
    finally:
        writer.join()
    stored = _stored_id(client, image_id) is not None
    if failed or not stored:
        log.debug("%s: not loaded%s", path, f": {failed[0]}" if failed else "")
        if stored:  # not forced: an image another run holds a lease on stays
            _remove_later(client, image_id, path, force=False)
        return False
    return True


class _DockerProcess(Process):
    """One container running the app under the bundled strace."""

    def __init__(self, container: Any, session: _DockerSession, tag: str, argv: list[str]) -> None:
        self.container = container
        self.session = session
        self.tag = tag
        self.argv = argv
        self._exit: int | None = None
        self._logs: tuple[bytes, bytes] = (b"", b"")
        # parsed while the app runs: little is left to parse once it is stopped
        self._follower = StraceFollower(os.path.join(session.outdir, f"{tag}.strace"), skip_execs=1,
                                        app_cwd=session.config.workdir or "/")

    def alive(self) -> bool:
        if self._exit is not None:
            return False
        self.container.reload()
        if self.container.status == "running":
            return True
        self._exit = int(self.container.attrs["State"]["ExitCode"])
        return False

    def wait(self, timeout: float) -> None:
        try:
            self._exit = int(self.container.wait(timeout=timeout)["StatusCode"])
        except Exception:  # the SDK raises a requests timeout (ReadTimeout, ConnectionError)
            log.debug("%s: still running after %ss", self.argv[0], timeout)

    def exit_code(self) -> int | None:
        self.alive()
        return self._exit

    def stop(self) -> None:
        container = self.container
        with contextlib.suppress(Exception):  # already exited
            container.kill()
        try:
            container.wait(timeout=30)
            self._logs = (container.logs(stdout=True, stderr=False)[-TAIL_BYTES:],
                          container.logs(stdout=False, stderr=True)[-TAIL_BYTES:])
        finally:
            try:
                container.remove(force=True, v=True)  # and the anonymous volumes of a VOLUME
            finally:
                self._follower.ended()

    def network_pid(self) -> int | None:
        if self.session.network == "host":
            return os.getpid()
        self.container.reload()
        pid = int(self.container.attrs["State"].get("Pid") or 0)
        return pid if pid > 0 else None

    def network_prefix(self) -> list[str] | None:
        pid = self.network_pid() if self.session.network != "host" else None
        if pid is None:
            return None
        return [shutil.which("nsenter") or "nsenter", "--target", str(pid), "--net", "--"]

    def outputs(self) -> tuple[bytes, bytes]:
        return self._logs

    def trace(self) -> Trace:
        try:
            return self._follower.finish().trace
        except OSError as exc:
            err = self._logs[1].decode("utf-8", "replace")[-300:]
            raise TraceError(f"{self.argv[0]}: strace wrote no log in the container ({exc}); "
                             f"stderr: {err}") from None

    def exec(self, command: tuple[str, ...], deadline: float, index: int) -> ExecResult:
        name = f"exec{index}.strace"
        cmd = self.session.traced(command, f"{OUTPUT}/{name}")
        result = self.container.exec_run(cmd, demux=True)
        stdout, stderr = result.output if result.output else (b"", b"")
        try:
            with open(open_log(os.path.join(self.session.outdir, name)), encoding="utf-8",
                      errors="surrogateescape") as f:
                trace = parse_strace(f, skip_execs=1).trace
        except OSError as exc:
            raise TraceError(f"{command[0]}: strace wrote no log for the exec probe: {exc}") from None
        code = int(result.exit_code) if result.exit_code is not None else None
        return ExecResult(code, (stdout or b"")[-TAIL_BYTES:], (stderr or b"")[-TAIL_BYTES:], trace)


def _tags_of(client: Any, image_id: str) -> list[str] | None:
    """The tags of the stored image `image_id`; None when the daemon does not store it."""
    if not image_id.startswith("sha256:"):
        return None
    try:
        image = client.images.get(image_id)
    except Exception:  # not there (ImageNotFound), or the daemon did not answer
        return None
    return list(image.tags or []) if image.id == image_id else None


def _stored_id(client: Any, image_id: str) -> str | None:
    """`image_id` when the daemon stores the image with that ID (its config digest), else None."""
    return image_id if _tags_of(client, image_id) is not None else None


_removals: list[threading.Thread] = []


def _remove_later(client: Any, image_id: str, tag: str, *, force: bool = True) -> None:
    """Remove a session's image in a thread of its own: the daemon took 2 s to delete the
    imported root of a 224 MB image, and the analysis that follows a trace does not need to
    wait for it. The thread is no daemon thread, so the process waits for it before it exits
    (slim.cli joins threads before it ends); wait_for_removals waits for it too. `image_id`
    may be a tag: without `force` the daemon then removes the tag, and the image with it only
    when no other tag names it."""
    def remove() -> None:
        try:
            client.images.remove(image_id, force=force)
        except Exception as err:  # report: the run itself went on
            log.warning("%s: could not remove the temporary image: %s", tag, err)

    thread = threading.Thread(target=remove, name="slim-docker-remove")
    thread.start()
    _removals[:] = [t for t in _removals if t.is_alive()]  # a fleet traces many images
    _removals.append(thread)


def wait_for_removals() -> None:
    """Return once every temporary image the runner made is removed (or failed to be)."""
    while _removals:
        _removals.pop().join()


# An image slim loads from a docker-archive is held by a lease: a tag `slim-lease:RANDOM` per
# run that uses it. Releasing removes that tag only, and the daemon deletes the image with the
# last one, so runs of the same image in parallel (a fleet's Dask workers, other slim
# processes) share one load and none removes the image from under another; an image that
# carries only lease tags is no user's, and a run takes a lease of its own on it.
LEASE_REPOSITORY = "slim-lease"
_leases: dict[str, list[str]] = {}  # image ID → the lease tags this process holds on it
_leases_lock = threading.Lock()


def _leased_only(tags: list[str]) -> bool:
    return bool(tags) and all(t.startswith(LEASE_REPOSITORY + ":") for t in tags)


def _take_lease(client: Any, image_id: str) -> bool:
    """Tag the stored image `image_id` with a lease of this run's; False when it is not stored
    (any more: the last lease of another run may have just removed it)."""
    if not image_id.startswith("sha256:"):  # an ID, never a name another image may carry
        return False
    reaper.guard(client)
    token = reaper.owned_name(uuid.uuid4().hex[:16])
    try:
        tagged = client.api.tag(image_id, LEASE_REPOSITORY, token)
    except Exception as exc:  # ImageNotFound, or the daemon did not answer
        log.debug("%s: no lease: %s", image_id, exc)
        return False
    if not tagged:  # the SDK answers whether the daemon said 201 Created
        return False
    with _leases_lock:
        _leases.setdefault(image_id, []).append(f"{LEASE_REPOSITORY}:{token}")
    return True


def _drop_lease(client: Any, image_id: str) -> None:
    """Remove one lease of this process on `image_id` (the image goes with the last tag)."""
    with _leases_lock:
        held = _leases.get(image_id)
        tag = held.pop() if held else None
        if held is not None and not held:
            del _leases[image_id]
    if tag is not None:
        _remove_later(client, tag, tag, force=False)


class _DockerSession(Session):
    """The root imported as a throwaway image, with the strace bundle; removed on exit. With
    the image's RootFS for `root` the image must be in the daemon's store already."""

    def __init__(self, runner: DockerRunner, root: str | RootFS, config: ImageConfig, network: str,
                 known_id: str = "") -> None:
        self.runner = runner
        self.root = root
        self.config = config
        self.network = network
        self.client = _client()
        self.tmp = reaper.mkdtemp(prefix="slim-trace-")
        self.tag = f"slim-trace:{reaper.owned_name(uuid.uuid4().hex[:12])}"
        self.known_id = known_id
        self.image_id: str | None = None  # the image the containers run
        self.owned = False  # imported by this session, removed with it
        self.bundle = os.path.join(self.tmp, "bundle")
        self.outdir = os.path.join(self.tmp, "out")
        self.prefix: dict[str, list[str]] = {}
        self.user = ResolvedUser(0, 0, "/root")

    def __enter__(self) -> _DockerSession:
        try:
            reaper.guard(self.client)
            os.mkdir(self.bundle)
            self.prefix = tool_bundle(self.bundle, {"strace": self.runner.strace,
                                                    "setpriv": self.runner.setpriv})
            if self.config.user:
                self.user = resolve_user(self.root, self.config.user)
            os.mkdir(self.outdir)
            os.chmod(self.outdir, 0o777)  # the app's user writes the log
            self.image_id = self._stored(self.known_id)
            if self.image_id is None:
                if not isinstance(self.root, str):
                    raise ImageNotStored(f"{self.known_id or 'the image'}: no longer in the daemon's image store")
                repo, _, tagname = self.tag.partition(":")
                _import_root(self.client, self.root, repo, tagname)
                self.owned = True
                try:
                    self.image_id = self.client.images.get(self.tag).id
                except Exception as exc:  # the SDK raises many kinds (APIError, requests errors)
                    raise TraceError(f"{self.root}: docker import failed: {exc}") from None
        except BaseException:
            self.__exit__()
            raise
        return self

    def _stored(self, image_id: str) -> str | None:
        """`image_id` when the daemon already stores that very image. Running it saves
        writing the private copy into Docker's store once more."""
        found = _stored_id(self.client, image_id)
        if found is not None:
            log.debug("%s: already in the daemon's image store: run as it is", image_id)
        return found

    def __exit__(self, *exc: object) -> None:
        if self.image_id is not None and self.owned:
            _remove_later(self.client, self.image_id, self.tag)
            self.image_id = None
        reaper.remove_tree(self.tmp)

    @property
    def as_root(self) -> bool:
        return self.user.uid == 0

    def traced(self, argv: list[str] | tuple[str, ...], log_file: str) -> list[str]:
        """strace → setpriv → argv. For a root app the container has CAP_SYS_PTRACE (strace
        needs it to follow processes that change ids) and setpriv removes it from the app's
        bounding and inheritable sets; a non-root app runs as its User from the start (Docker
        resolves it and hands it the stdio) and no capability is added at all."""
        setpriv = ([*self.prefix["setpriv"], "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace", "--"]
                   if self.as_root else [*self.prefix["setpriv"], "--"])
        return [*self.prefix["strace"], *STRACE_OPTIONS, "-o", log_file, "--", *setpriv, *argv]

    def start(self, argv: list[str], tag: str) -> Process:
        config = self.config
        command = self.traced(argv, f"{OUTPUT}/{tag}.strace")
        env = list(config.env)
        if not any(e.startswith("PATH=") for e in env):
            env.append("PATH=" + ":".join(config.path_dirs))
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={self.user.home}")
        try:
            container = self.client.containers.create(
                self.image_id, entrypoint=command, command=[], environment=env,
                healthcheck={"test": ["NONE"]},  # as the imported copy, which has no config
                working_dir=config.workdir or "/", user=config.user or "",
                network_mode=self.network, cap_add=["SYS_PTRACE"] if self.as_root else [],
                detach=True, labels={reaper.OWNER_LABEL: reaper.owner()} if reaper.owner() else {},
                volumes={self.bundle: {"bind": BUNDLE, "mode": "ro"},
                         self.outdir: {"bind": OUTPUT, "mode": "rw"}},
            )
        except Exception as exc:
            raise TraceError(f"{self.tag}: cannot create the container: {exc}") from None
        try:
            container.start()
        except Exception as exc:
            container.remove(force=True, v=True)
            raise TraceError(f"{self.tag}: cannot start the container: {exc}") from None
        return _DockerProcess(container, self, tag, argv)


class DockerRunner(Runner):
    """Runs the image root in a Docker container under the host's strace."""

    name = "docker"
    copies_root = True  # an unpacked root is `docker import`ed first (_DockerSession)

    def __init__(self, strace: str | None = None) -> None:
        self.strace = strace or shutil.which("strace") or ""
        self.setpriv = shutil.which("setpriv") or ""

    @classmethod
    def available(cls) -> bool:
        if not (shutil.which("strace") and shutil.which("setpriv") and shutil.which("nsenter")):
            return False
        try:
            _client()
        except TraceError:
            return False
        return True

    def session(self, image_root: str | RootFS, config: ImageConfig, *, network: str,
                image_id: str = "") -> Session:
        if network not in ("host", "none"):
            raise TraceError(f"{network}: unknown network mode (host or none)")
        if not self.strace or not self.setpriv:
            raise TraceError("docker runner: strace and setpriv (util-linux) are needed on the host")
        root = os.path.realpath(image_root) if isinstance(image_root, str) else image_root
        return _DockerSession(self, root, config, network, image_id)

    def stores(self, image_id: str) -> bool:
        """Whether the daemon stores the image whose ID is `image_id` as the user's: its ID is
        the digest of its config, which names every layer's diff_id, so its files are the
        image's files. One only slim's leases name is not (`store` takes a lease on it)."""
        tags = _tags_of(_client(), image_id)
        return tags is not None and not _leased_only(tags)

    def store(self, archive: str, image_id: str) -> bool:
        """Load the docker-archive `archive` (image `image_id`) into the daemon, with no names,
        under a lease of this run's (see LEASE_REPOSITORY): `docker load` applies the layers
        the daemon does not have yet, where running an unpacked copy means importing the whole
        root (Ruby: 3.8 s against 9.3 s). An image another run loaded is shared, not loaded."""
        client = _client()
        if _take_lease(client, image_id):  # stored already (another run's load): tagging says so
            return True
        if not load_archive(client, archive, image_id):
            return False
        if _take_lease(client, image_id):
            return True
        _remove_later(client, image_id, archive, force=False)  # loaded, and gone or untaggable
        return False

    def release(self, image_id: str) -> None:
        """End the lease `store` took (the image goes with the last one; in the background:
        see _remove_later)."""
        _drop_lease(_client(), image_id)

    def find_program(self, session: Session, config: ImageConfig, name: str) -> str | None:
        assert isinstance(session, _DockerSession)
        return find_program(session.root, name, config)
