"""Running the service on loopback: a container as ECS runs it (until it answers), or serve_command without Docker."""

from __future__ import annotations

import errno
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import http, service_env
from ..config import Settings
from ..context import Context
from ..errors import ConfigError, NotFound, StepFailed, first_line
from ..output import Output
from .envfile import ENV_EXAMPLE, env_file_path, read_env_file

REVISION_LABEL = "org.opencontainers.image.revision"


READY_TIMEOUT = 30.0


STOP_TIMEOUT = 10


def parse_port(value: object) -> int | None:
    """The port number in a flag or variable, or None when it is not one (1-65535)."""
    text = str(value).strip()
    return int(text) if text.isdigit() and 1 <= int(text) <= 65535 else None


def listening_inodes(table: str, port: int) -> set[str]:
    """Socket inodes listening on `port` in a /proc/net/tcp or tcp6 table."""
    inodes = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        # fields: sl, local_address (hex ip:port), rem_address, st (0A = LISTEN), ..., inode
        if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """`name (pid N)` of the process listening on `port`, when this system and user can see it."""
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            inodes |= listening_inodes((proc / table).read_text(), port)
        except OSError:
            continue
    wanted = {f"socket:[{inode}]" for inode in inodes}
    if not wanted:
        return None
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            if any(fd.readlink().as_posix() in wanted for fd in (pid_dir / "fd").iterdir()):
                return f"{(pid_dir / 'comm').read_text().strip()} (pid {pid_dir.name})"
        except OSError:  # gone meanwhile, or another user's
            continue
    return None


def ensure_port_free(port: int, how_to_change: str) -> None:
    """Fail before anything starts when 127.0.0.1:port cannot be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As servers do: a connection lingering in TIME_WAIT does not make the port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EACCES:
                raise ConfigError(f"port {port} needs root here; {how_to_change} (1024 or above)") from None
            holder = port_holder(port)
            by = f"by {holder}" if holder else "by a process this user cannot see"
            raise ConfigError(
                f"port {port} on 127.0.0.1 is in use {by}; stop it or {how_to_change}"
            ) from None


@dataclass(frozen=True)
class RunSpec:
    """Everything `docker run` is given, and where the service will answer."""

    image: str
    name: str
    environment: dict[str, str]
    port: int
    container_port: int
    host_network: bool
    url: str

    def create_args(self) -> dict[str, Any]:
        """Keyword arguments for the Docker SDK's containers.create."""
        args: dict[str, Any] = {"image": self.image, "name": self.name, "environment": self.environment}
        if self.host_network:
            return {**args, "network_mode": "host"}
        return {**args, "ports": {f"{self.container_port}/tcp": ("127.0.0.1", self.port)}}


def container_name(repository: str, revision: str) -> str:
    """`<repository>-<sha12>`: `docker ps` says which commit runs."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{repository}-{revision[:12]}")


def base_path_of(value: str) -> str:
    return "/" + value.strip("/") + "/" if value.strip("/") else "/"


def run_spec(
    settings: Settings, image_ref: str, name: str, env: Mapping[str, str], port: int, has_bridge: bool
) -> RunSpec:
    """The container as ECS would run it (PORT and BASE_PATH as the task definition sets them),
    with the env file on top; PORT always follows where it is reachable here."""
    host_network = not has_bridge
    environment = {"BASE_PATH": settings.base_path, **env}
    if host_network:
        environment |= {"PORT": str(port), "HOST": "127.0.0.1"}
    else:
        environment["PORT"] = str(settings.container_port)
    url = f"http://127.0.0.1:{port}{base_path_of(environment['BASE_PATH'])}"
    return RunSpec(image_ref, name, environment, port, settings.container_port, host_network, url)


def describe(spec: RunSpec, env_path: Path | None, env: Mapping[str, str]) -> list[str]:
    """What will run, for the person (and --dry-run); variable names only, never values."""
    network = (
        f"host network, PORT={spec.port} HOST=127.0.0.1 (this engine has no bridge network)"
        if spec.host_network
        else f"127.0.0.1:{spec.port} -> container port {spec.container_port}"
    )
    lines = [f"image:     {spec.image}", f"container: {spec.name}", f"network:   {network}"]
    if env_path is not None:
        names = ", ".join(sorted(env)) or "(none)"
        lines.append(f"env file:  {env_path} ({len(env)} variables: {names})")
        replaced = sorted(key for key in ("PORT", "HOST") if key in env and env[key] != spec.environment[key])
        if replaced:
            lines.append(
                f"           {' and '.join(replaced)} from the env file replaced: set by where it runs"
            )
    lines.append(f"url:       {spec.url}")
    return lines


@dataclass
class Running:
    """A started container that answers at `url`; `stop()` stops and removes it."""

    url: str
    container_name: str
    container: Any

    def stop(self, timeout: int = STOP_TIMEOUT) -> None:
        """SIGTERM (the image's stop signal), SIGKILL after `timeout` s, then remove."""
        from docker.errors import NotFound as DockerNotFound

        try:
            self.container.stop(timeout=timeout)
            self.container.remove(force=True)
        except DockerNotFound:
            pass  # already gone

    def follow(self, out: Output) -> int:
        """Stream the container's logs (from its start) until it exits; returns its exit code."""
        for chunk in self.container.logs(stream=True, follow=True):
            out.stream.write(chunk.decode(errors="replace"))
            out.stream.flush()
        return int(self.container.wait()["StatusCode"])


def has_bridge(client: Any) -> bool:
    return any(network.name == "bridge" for network in client.networks.list(names=["bridge"]))


def ensure_name_free(client: Any, name: str) -> None:
    from docker.errors import NotFound as DockerNotFound

    try:
        client.containers.get(name)
    except DockerNotFound:
        return
    raise ConfigError(
        f"a container named {name} already exists (an earlier --detach run?); "
        f"stop it with `docker stop {name} && docker rm {name}`"
    )


def start(client: Any, spec: RunSpec, out: Output, timeout: float = READY_TIMEOUT) -> Running:
    """Create and start the container, then wait until it answers HTTP at its URL."""
    from docker.errors import APIError

    try:
        container = client.containers.create(**spec.create_args())
    except APIError as exc:
        raise StepFailed(f"docker could not create {spec.name}: {exc.explanation or exc}") from None
    running = Running(spec.url, spec.name, container)
    try:
        container.start()
        started = time.monotonic()
        while not http.answers(spec.url):
            container.reload()
            state = container.attrs["State"]
            if not state.get("Running") or time.monotonic() - started > timeout:
                tail = container.logs(tail=20).decode(errors="replace").rstrip()
                if tail:
                    out.say(tail)
                why = (
                    "still starting" if state.get("Running") else f"exited with code {state.get('ExitCode')}"
                )
                raise StepFailed(
                    f"container {spec.name} did not answer at {spec.url} within "
                    f"{time.monotonic() - started:.0f}s ({why}); "
                    + ("its last log lines are above" if tail else "it logged nothing")
                )
            time.sleep(0.1)
    except APIError as exc:
        container.remove(force=True)
        raise StepFailed(f"docker could not start {spec.name}: {exc.explanation or exc}") from None
    except BaseException:
        container.remove(force=True)
        raise
    return running


@contextmanager
def _stopped_like_ctrl_c() -> Iterator[None]:
    """While a foreground run lasts, SIGTERM and SIGHUP (kill, a closed terminal) stop it
    the way Ctrl-C does, so the container is still removed."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _hand_over(running: Running, detach: bool, out: Output) -> Running:
    """Detached: say how to stop it. Foreground: logs until it exits or Ctrl-C, then remove it."""
    name = running.container_name
    out.say(f"{name} answers at {running.url}")
    if detach:
        out.say(f"left running; stop it with: docker stop {name} && docker rm {name}")
        return running
    out.say("its logs follow; Ctrl-C stops and removes it")
    try:
        with _stopped_like_ctrl_c():
            code = running.follow(out)
    except KeyboardInterrupt:
        out.say(f"stopping {name} ...")
        running.stop()
        out.say(f"stopped and removed {name}")
        return running
    running.stop()
    if code != 0:
        raise StepFailed(f"container {name} exited with code {code}")
    out.say(f"{name} exited; removed it")
    return running


def _launch(ctx: Context, client: Any, spec: RunSpec, detach: bool) -> Running:
    with ctx.out.step(f"run {spec.name}"):
        running = start(client, spec, ctx.out)
    return _hand_over(running, detach, ctx.out)


def run_image(ctx: Context, ref: str, env_file: Path | None, port: int, detach: bool = True) -> Running:
    """Run a local image (one just built or pushed) the way pull-and-run does, without pulling.

    The container is named after the image's revision label; with detach=False the
    logs stream until it exits or Ctrl-C. Raises before starting anything when the
    env file, the port or the name is a problem.
    """
    from docker.errors import ImageNotFound

    env = read_env_file(env_file, ctx.environ, ctx.settings.root / ENV_EXAMPLE) if env_file else {}
    ensure_port_free(port, "choose another port")
    client = ctx.clients.docker()
    try:
        labels = client.images.get(ref).labels or {}
    except ImageNotFound:
        raise NotFound(f"no local image {ref}; build it with `invoke dockerize` or pull it") from None
    revision = labels.get(REVISION_LABEL) or ref.rsplit(":", 1)[-1]
    spec = run_spec(
        ctx.settings, ref, container_name(ctx.settings.repository, revision), env, port, has_bridge(client)
    )
    ensure_name_free(client, spec.name)
    return _launch(ctx, client, spec, detach)


def serve_environment(
    settings: Settings, environ: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, str]:
    """The shell's environment, the project's PORT and BASE_PATH (as the task definition
    sets them) and 127.0.0.1 as HOST, with the env file on top."""
    defaults = {"HOST": "127.0.0.1", "PORT": str(settings.container_port), "BASE_PATH": settings.base_path}
    return {**service_env.for_service(environ, settings.pass_env), **defaults, **env}


def serve(ctx: Context, env_file: str | None) -> None:
    """Run the service's serve_command directly (no Docker) with the env file loaded."""
    settings, out = ctx.settings, ctx.out
    if not settings.serve_command:
        raise ConfigError(
            "[tool.pipeline] serve_command: not set; set it to the command that runs the service "
            '(e.g. serve_command = "python -m app"), or use `invoke pull-and-run`'
        )
    env_path = env_file_path(settings, env_file)
    env = read_env_file(env_path, ctx.environ, settings.root / ENV_EXAMPLE)
    environment = serve_environment(settings, ctx.environ, env)
    port = parse_port(environment["PORT"])
    if port is None:
        raise ConfigError(f"env file {env_path}: PORT must be a port number 1-65535")
    ensure_port_free(port, f"set another PORT in {env_path}")
    argv = shlex.split(settings.serve_command)
    url = f"http://127.0.0.1:{port}{base_path_of(environment['BASE_PATH'])}"
    out.say(f"serving `{settings.serve_command}` at {url}")
    out.detail(f"env file {env_path}: {', '.join(sorted(env)) or '(no variables)'}")
    out.say("Ctrl-C stops it")
    try:
        proc = subprocess.Popen(argv, cwd=settings.root, env=environment)
    except OSError as exc:
        raise ConfigError(
            f"[tool.pipeline] serve_command: cannot run {argv[0]!r} ({first_line(exc)}); fix the command"
        ) from None
    try:
        with _stopped_like_ctrl_c():
            code = proc.wait()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches the service too; a signal sent to us alone is passed on.
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.say("stopped")
        return
    if code != 0:
        raise StepFailed(f"`{settings.serve_command}` exited with code {code}")
