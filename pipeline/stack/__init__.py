"""The real local stack on loopback: a Docker engine, a registry for ECR's endpoint, the AWS emulator.

The registry (docker-registry) holds the images, behind the emulator's stand-in for ECR's
endpoint rules (emulator/ecr_endpoint.py); the AWS API is moto in server mode with the
stand-ins in pipeline/stack/emulator/.

Everything listens on 127.0.0.1 only. `up` is idempotent: it installs what is missing
(Debian packages, as root), reuses what already runs (a laptop's Docker engine), and
starts the rest in the background, recording pids under the stack directory so that
`down` stops exactly what `up` started.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import http
from ..errors import Unavailable
from . import cgroups
from .base_image import LOCAL_BASE_IMAGE as LOCAL_BASE_IMAGE
from .base_image import ensure_base_image

ACCOUNT_ID = "123456789012"  # moto's account; its ECR token decodes to AWS:<account>-auth-token
REGISTRY_USER = "AWS"
REGISTRY_PASSWORD = f"{ACCOUNT_ID}-auth-token"

Say = Callable[[str], None]


@dataclass(frozen=True)
class StackConfig:
    directory: Path
    registry_port: int = 5000  # ECR's endpoint: the emulator's front (emulator/ecr_endpoint.py)
    registry_backend_port: int = 5001  # docker-registry itself, behind the front
    emulator_port: int = 4566
    bridge_port: int = 4567
    region: str = "us-east-1"
    # Health-check and deregistration timings of the ECS and load balancer stand-ins run
    # this many times faster (1: ECS's own); printed by `up`, documented in the README.
    speed: float = 10.0

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def registry_backend(self) -> str:
        return f"127.0.0.1:{self.registry_backend_port}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"


def config_from(environ: os._Environ[str] | dict[str, str]) -> StackConfig:
    directory = Path(environ.get("PIPELINE_STACK_DIR") or Path.home() / ".cache" / "ecs-pipeline" / "stack")
    return StackConfig(
        directory=directory,
        registry_port=int(environ.get("STACK_REGISTRY_PORT", "5000")),
        registry_backend_port=int(environ.get("STACK_REGISTRY_BACKEND_PORT", "5001")),
        emulator_port=int(environ.get("STACK_EMULATOR_PORT", "4566")),
        bridge_port=int(environ.get("STACK_BRIDGE_PORT", "4567")),
        speed=float(environ.get("EMULATOR_SPEED", "10")),
    )


def env(cfg: StackConfig) -> dict[str, str]:
    """The variables that point the tasks (and the aws CLI) at the stack.

    Never AWS_RESOURCE_NAME_PREFIX: it names the service's resources, and a default here
    would send one service's deploy to another's."""
    variables = {
        "AWS_ENDPOINT_URL": cfg.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": cfg.region,
        "AWS_ACCOUNT_ID": ACCOUNT_ID,
        "ECR_ENDPOINT": cfg.registry,
    }
    base = cfg.directory / "base_image"
    if base.exists():
        variables["BASE_IMAGE"] = base.read_text().strip()
    return variables


# --- helpers -------------------------------------------------------------------


def _wait(check: Callable[[], bool], what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    hint = f"; see {log}" if log else ""
    raise Unavailable(f"{what} did not come up within {timeout:.0f}s{hint}")


def _apt_install(packages: list[str], say: Say) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(
            f"missing {' '.join(packages)}; install with: sudo apt-get install -y {' '.join(packages)}"
        )
    say(f"installing {' '.join(packages)} (apt-get)")
    quiet = {"DEBIAN_FRONTEND": "noninteractive", **os.environ}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        proc = subprocess.run(cmd, env=quiet, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise Unavailable(f"`{' '.join(cmd)}` failed: {tail[0]}")


def _start(
    name: str,
    cmd: list[str],
    cfg: StackConfig,
    ready: Callable[[], bool],
    timeout: float,
    extra_env: dict[str, str] | None = None,
) -> None:
    """Start a background process and wait until `ready`; on failure stop it again."""
    log = cfg.directory / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the invoke process; `down` stops it
            env={**os.environ, **(extra_env or {})},
        )
    try:
        _wait(lambda: proc.poll() is None and ready(), name, timeout, log)
    except Unavailable:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        raise
    (cfg.directory / f"{name}.pid").write_text(str(proc.pid))


def _process(pid: int) -> str | None:
    """The name of a live (not zombie) process, from /proc (no procps needed)."""
    try:
        text = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    comm, _, rest = text.partition(" (")[2].rpartition(") ")
    return None if rest[:1] in ("Z", "X") else comm


def _running(name: str) -> bool:
    return any(_process(int(p.name)) == name for p in Path("/proc").iterdir() if p.name.isdigit())


def _remove_stale_pid_file(path: Path, name: str) -> None:
    """A killed daemon leaves its pid file, and its successor refuses to start over it
    (dockerd's own, and the containerd dockerd manages)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    if _process(pid) != name:
        path.unlink(missing_ok=True)


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


# --- the parts -------------------------------------------------------------------


def _cgroup_driver() -> str:
    import docker

    return str(docker.from_env(timeout=30).info().get("CgroupDriver", ""))


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def ensure_engine(cfg: StackConfig, say: Say) -> None:
    if docker_answers():
        say("docker engine: running (reused)")
        return
    if not shutil.which("dockerd"):
        _apt_install(["docker.io"], say)
        if docker_answers():  # the package may have started its own service
            say("docker engine: running")
            return
    # A dockerd that is still starting (or still dying) gets a moment to settle.
    with contextlib.suppress(Unavailable):
        _wait(lambda: docker_answers() or not _running("dockerd"), "dockerd", 15)
    if docker_answers():
        say("docker engine: running (reused)")
        return
    if _running("dockerd"):
        raise Unavailable(
            "a dockerd process runs but does not answer on its socket; stop it "
            "(`pkill dockerd`) and run `invoke stack.up` again"
        )
    _remove_stale_pid_file(cfg.directory / "dockerd.real.pid", "dockerd")
    _remove_stale_pid_file(Path("/var/run/docker/containerd/containerd.pid"), "containerd")
    # No default bridge and no iptables: containers use host networking, and nothing
    # this stack starts can send traffic anywhere but loopback.
    _start(
        "dockerd",
        [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--pidfile",
            str(cfg.directory / "dockerd.real.pid"),
        ],
        cfg,
        docker_answers,
        60,
    )
    say("docker engine: started (no default bridge, host networking)")


def _registry_answers(cfg: StackConfig) -> bool:
    # 401 proves it is a registry that wants credentials, as ECR's endpoint does.
    return http.status(f"http://{cfg.registry_backend}/v2/") == 401


def ensure_registry(cfg: StackConfig, say: Say) -> None:
    """docker-registry on the backend port; the emulator serves ECR's endpoint in front of it."""
    root = cfg.directory / "registry"
    config = _registry_config(cfg, root)
    current = (root / "config.yml").read_text() if (root / "config.yml").exists() else ""
    if _registry_answers(cfg) and current == config:
        say(f"registry: running on {cfg.registry_backend}")
        return
    if _stop(cfg, "registry"):
        say("registry: stopped one of another configuration")
    missing = [
        pkg
        for pkg, binary in (("docker-registry", "docker-registry"), ("apache2-utils", "htpasswd"))
        if not shutil.which(binary)
    ]
    if missing:
        _apt_install(missing, say)
    root.mkdir(parents=True, exist_ok=True)
    # bcrypt at its lowest cost (4): the registry checks the password on every request,
    # and at htpasswd's default (5) that check was 39 % of the registry's CPU (its pprof).
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", "-C", "4", REGISTRY_USER, REGISTRY_PASSWORD],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (root / "htpasswd").write_text(htpasswd)
    (root / "config.yml").write_text(config)
    _start(
        "registry",
        ["docker-registry", "serve", str(root / "config.yml")],
        cfg,
        lambda: _registry_answers(cfg),
        30,
    )
    say(
        f"registry: started on {cfg.registry_backend}, behind ECR's endpoint {cfg.registry} "
        f"(login required: {REGISTRY_USER} / ECR token)"
    )


def _registry_config(cfg: StackConfig, root: Path) -> str:
    # Push notifications feed the emulator's ECR records (emulator.RegistryBridge). No
    # `http.host`: the URLs it hands out (upload locations) follow the Host a client asked,
    # which ECR's endpoint in front passes through.
    return f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root / "data"}
  delete:
    enabled: true
http:
  addr: {cfg.registry_backend}
auth:
  htpasswd:  # made by `htpasswd -Bbn -C 4` (ensure_registry)
    realm: ecr-stand-in
    path: {root / "htpasswd"}
notifications:
  endpoints:
    - name: ecr-records
      url: http://127.0.0.1:{cfg.bridge_port}/events
      timeout: 2s
      threshold: 3
      backoff: 1s
"""


def _emulator_answers(cfg: StackConfig) -> bool:
    # A cheap real API call (STS GetCallerIdentity), not /moto-api/data.json: that one
    # serialises the emulator's whole state and slows down as the state grows.
    request = urllib.request.Request(
        cfg.endpoint + "/",
        data=b"Action=GetCallerIdentity&Version=2011-06-15",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return ACCOUNT_ID.encode() in resp.read()
    except (OSError, ValueError):
        return False


def _running_identity(cfg: StackConfig) -> dict[str, str] | None:
    """What the emulator answering on the port says it is (its bridge's GET /identity)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{cfg.bridge_port}/identity", timeout=5) as resp:
            found = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def ensure_emulator(cfg: StackConfig, say: Say) -> None:
    from .emulator import identity

    if _emulator_answers(cfg):
        mine, running = identity(), _running_identity(cfg)
        if running == mine:
            say(f"aws emulator: running on {cfg.endpoint} (local ECS timings x{cfg.speed:g})")
            return
        what = (
            "an emulator of an older version (no identity)"
            if running is None
            else f"an emulator of another version ({running.get('version')}, from {running.get('checkout')})"
        )
        if not _alive(cfg.directory / "emulator.pid"):
            raise Unavailable(
                f"{what} answers on {cfg.endpoint}, not this checkout's ({mine['version']}, from "
                f"{mine['checkout']}); stop it (`invoke stack.down` in its checkout) or give this stack "
                "other ports (STACK_EMULATOR_PORT, STACK_BRIDGE_PORT)"
            )
        say(f"aws emulator: {what} was running; restarting it with this checkout's code (its state is lost)")
        _stop(cfg, "emulator")
    _start(
        "emulator",
        [
            sys.executable,
            "-m",
            "pipeline.stack.emulator",
            "--port",
            str(cfg.emulator_port),
            "--bridge-port",
            str(cfg.bridge_port),
            "--registry",
            f"http://{cfg.registry}",
            "--registry-backend",
            f"http://{cfg.registry_backend}",
            "--registry-password",
            REGISTRY_PASSWORD,
        ],
        cfg,
        # Up when the API answers and so does ECR's endpoint in front of the registry.
        lambda: _emulator_answers(cfg) and http.status(f"http://{cfg.registry}/v2/") == 401,
        60,
        {
            "EMULATOR_SPEED": str(cfg.speed),
            "AWS_DEFAULT_REGION": cfg.region,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
    )
    say(
        f"aws emulator: started on {cfg.endpoint} (moto server + ECS scheduler and load balancer "
        f"stand-ins; health-check and deregistration timings x{cfg.speed:g}, EMULATOR_SPEED)"
    )


def require_local_extra() -> None:
    """The emulator is moto server, which only the `local` extra installs."""
    import importlib.util

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise Unavailable(
            "the local stack needs the AWS emulator (moto server): "
            "pip install 'ecs-pipeline[local]', then run this again"
        )


def up(cfg: StackConfig, say: Say = print) -> None:
    require_local_extra()
    cfg.directory.mkdir(parents=True, exist_ok=True)
    # One `up` at a time per stack: two at once (parallel test workers, two terminals)
    # would both find the emulator down and both start one on the same port.
    with open(cfg.directory / "up.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_engine(cfg, say)
        say(f"docker engine: {cgroups.favour_containers(driver=_cgroup_driver())}")
        # The registry first: the emulator's ECR endpoint takes the port an older stack's
        # registry may still hold.
        ensure_registry(cfg, say)
        ensure_emulator(cfg, say)
        ensure_base_image(cfg, say)


def reset_emulator(cfg: StackConfig, say: Say = print) -> None:
    """Stop this stack's emulator and its task containers, so the next `up` starts an empty
    one: a test run killed midway leaves services whose tasks the scheduler would keep
    starting, health-checking and replacing under the next run."""
    stopped = _stop(cfg, "emulator")
    leftovers = _remove_task_containers(cfg)
    if stopped or leftovers:
        say(f"aws emulator: reset ({leftovers} task containers removed); the next start is empty")


def _remove_task_containers(cfg: StackConfig) -> int:
    from docker.errors import NotFound

    leftovers = task_containers(cfg)
    for container in leftovers:
        with contextlib.suppress(NotFound):  # removed by the stopping emulator meanwhile
            container.remove(force=True)
    return len(leftovers)


def _stop(cfg: StackConfig, name: str) -> bool:
    pid_file = cfg.directory / f"{name}.pid"
    pid = _alive(pid_file)
    if pid:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(pid_file):
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return pid is not None


def task_containers(cfg: StackConfig) -> list[Any]:
    """The containers this stack's ECS stand-in started (its label names its endpoint)."""
    if not docker_answers():
        return []
    import docker

    from .emulator.engine import OWNER_LABEL

    client = docker.from_env(timeout=30)
    # ignore_removed: the emulator removes its containers itself as it stops, between the
    # engine's list and docker-py's inspect of each.
    found = client.containers.list(
        all=True, filters={"label": f"{OWNER_LABEL}={cfg.endpoint}"}, ignore_removed=True
    )
    return list(found)


def down(cfg: StackConfig, say: Say = print) -> None:
    """Stop what `up` started (never an engine it found running), and the task containers
    the emulator started: the emulator removes them itself on SIGTERM, this catches the
    ones a killed emulator left."""
    for name in ("emulator", "registry"):
        if _stop(cfg, name):
            say(f"{name}: stopped")
    leftovers = _remove_task_containers(cfg)
    if leftovers:
        say(f"task containers: removed {leftovers}")
    if _stop(cfg, "dockerd"):
        say("dockerd: stopped")


def registry_auth_header() -> str:
    return "Basic " + base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
