"""STAND-IN for ECS's container agent: runs one task's containers on the local engine.

From the task definition it applies image (pulled from the local registry with the
credentials ECR hands out), command, entryPoint, environment, secrets (resolved from
the emulator's SSM Parameter Store and Secrets Manager), user, workingDirectory,
readonlyRootFilesystem, dependsOn, essential, stopTimeout and healthCheck (the command runs
in the container, see Probe), and labels each container as ECS's agent does.

One port per task: on an engine with a bridge network the containerPort is published on
a free 127.0.0.1 port; on one without (this machine, CI) the task uses host networking
and is told its port in PORT and the address to bind in HOST (127.0.0.1: nothing listens
beyond loopback), and health-check commands that name the containerPort on loopback are
pointed at that port. That is the stand-in's limit: a service must read PORT and HOST.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import awslogs, engine

PULL_FAILED = "CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref {image}: {image}: not found"
SECRETS_FAILED = (
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
    "retrieval failed: unable to retrieve {what}: service call has been retried 1 time(s): {detail}"
)


# The health-check command runs in the container, each run a `docker exec` of the user's
# command (hello_world's starts a Python interpreter): about 0.1 s of CPU between runc, the
# engine and the interpreter. So the agent runs the checks itself (Probe) instead of Docker:
# until a container first passes, at ECS's timings sped up (the first check one interval
# after the start, HEALTHY on the first success, UNHEALTHY after startPeriod + retries x
# interval, as on ECS), because that is what a rollout waits for; once healthy, at ECS's own
# interval, not sped up. Sped up, two dozen healthy tasks of a parallel test run were
# 12 execs a second: a 2-core machine's whole second core, until slow checks timed out,
# tasks were replaced and every replacement made the machine slower still.


@dataclass
class Probe:
    """One container's health check: the command as exec argv and ECS's timings, sped up."""

    argv: list[str]
    interval: float  # sped up
    healthy_interval: float  # ECS's own
    timeout: float
    retries: int
    start_period: float
    started: float = field(default_factory=time.monotonic)
    healthy_once: bool = False
    failures: int = 0
    running: str = ""  # the exec in flight
    running_since: float = 0.0
    next_run: float = 0.0

    def __post_init__(self) -> None:
        self.next_run = self.started + self.interval  # Docker's (so ECS's) first check

    def step(self, client: Any, container_id: str, health: str) -> str:
        """Start the command, or read how it ended; the container's health after this step."""
        now = time.monotonic()
        if self.running:
            try:
                run = client.api.exec_inspect(self.running)
            except Exception:
                run = {"Running": False, "ExitCode": 1}
            if run.get("Running") and now - self.running_since < self.timeout:
                return health
            self.running = ""
            health = self._judge(run.get("Running") is False and run.get("ExitCode") == 0, now, health)
            self.next_run = now + (self.healthy_interval if self.healthy_once else self.interval)
        if now >= self.next_run:
            try:
                self.running = client.api.exec_create(container_id, self.argv)["Id"]
                client.api.exec_start(self.running, detach=True)
                self.running_since = now
            except Exception:  # the container is going away: its exit is read next round
                self.running, self.next_run = "", now + self.interval
        return health

    def _judge(self, passed: bool, now: float, health: str) -> str:
        if passed:
            self.healthy_once, self.failures = True, 0
            return "HEALTHY"
        if not self.healthy_once and now - self.started < self.start_period:
            return health  # failures in the start period do not count
        self.failures += 1
        return "UNHEALTHY" if self.failures >= self.retries else health


class StartFailure(Exception):
    """The task never got its containers running: ECS's TaskFailedToStart."""


@dataclass
class ContainerState:
    name: str
    essential: bool
    docker_id: str = ""
    status: str = "PENDING"  # PENDING | RUNNING | STOPPED
    health: str = "UNKNOWN"  # HEALTHY | UNHEALTHY | UNKNOWN
    exit_code: int | None = None
    reason: str = ""
    has_health_check: bool = False
    probe: Probe | None = None


@dataclass
class TaskRun:
    """What the agent knows of one task; the scheduler reads it under engine.LOCK."""

    task_arn: str
    cluster: str
    definition: dict[str, Any]
    account: str
    region: str
    port: int = 0
    speed: float = 1.0  # the health-check timings' speed-up (engine.cluster_speed)
    phase: str = "PROVISIONING"  # PROVISIONING | PENDING | RUNNING | STOPPED
    stop_code: str = ""
    stopped_reason: str = ""
    containers: dict[str, ContainerState] = field(default_factory=dict)
    running_since: float | None = None
    stopping: bool = False
    _thread: threading.Thread | None = None
    # Start-up and stop meet here: a stop during start-up is left to the start-up thread,
    # which alone may still set a phase (see stop).
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _watching: bool = False
    _stop_request: tuple[str, str] = ("", "")

    def start(self) -> None:
        for cdef in self.definition.get("containerDefinitions", []):
            self.containers[cdef["name"]] = ContainerState(
                cdef["name"], cdef.get("essential", True), has_health_check=bool(cdef.get("healthCheck"))
            )
        self.port = engine.free_port()
        self._thread = threading.Thread(target=self._run, name=f"task {self.task_arn[-8:]}", daemon=True)
        self._thread.start()

    # --- start-up -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            secrets = self._resolve_secrets()
            self.phase = "PENDING"
            self._pull_images()
            for cdef in self._in_dependency_order():
                if self.stopping:
                    break
                self._start_container(cdef, secrets)
            with self._lock:
                if not self.stopping:
                    self.phase = "RUNNING"
                    self.running_since = time.monotonic()
                    self._watching = True
            if self._watching:
                self._watch()
            else:  # stopped while starting: what this thread made goes, and the task is STOPPED
                self._finish(*self._stop_request)
        except StartFailure as failure:
            self._finish("TaskFailedToStart", str(failure))
        except Exception as exc:  # the engine itself failed: say so as ECS would
            self._finish("TaskFailedToStart", f"CannotStartContainerError: {exc}".splitlines()[0][:255])

    def _resolve_secrets(self) -> dict[str, dict[str, str]]:
        from moto.secretsmanager.models import secretsmanager_backends
        from moto.ssm.models import ssm_backends

        resolved: dict[str, dict[str, str]] = {}
        for cdef in self.definition.get("containerDefinitions", []):
            values: dict[str, str] = {}
            for secret in cdef.get("secrets", []) or []:
                source = secret["valueFrom"]
                if ":secretsmanager:" in source:
                    values[secret["name"]] = self._from_secrets_manager(source, secretsmanager_backends)
                else:
                    name = source.split(":parameter", 1)[1] if ":parameter" in source else source
                    try:
                        parameter: Any = ssm_backends[self.account][self.region].get_parameter(name)
                        value = parameter.value
                        if parameter.parameter_type == "SecureString":  # moto stores it "encrypted"
                            value = parameter.decrypt(value)
                        values[secret["name"]] = value
                    except Exception:
                        raise StartFailure(
                            SECRETS_FAILED.format(
                                what="secrets from ssm", detail=f"invalid ssm parameters: {name}"
                            )
                        ) from None
            resolved[cdef["name"]] = values
        return resolved

    def _from_secrets_manager(self, source: str, backends: Any) -> str:
        # arn:aws:secretsmanager:region:account:secret:name[:json-key[:version-stage[:version-id]]]
        parts = source.split(":")
        secret_id, key = ":".join(parts[:7]), parts[7] if len(parts) > 7 else ""
        try:
            value = backends[self.account][self.region].get_secret_value(secret_id, None, None)[
                "SecretString"
            ]
        except Exception:
            raise StartFailure(
                SECRETS_FAILED.format(
                    what="secret from asm",
                    detail=f"failed to fetch secret {secret_id} from secrets manager: "
                    "ResourceNotFoundException: Secrets Manager can't find the specified secret.",
                )
            ) from None
        if not key:
            return str(value)
        try:
            return str(json.loads(value)[key])
        except (ValueError, KeyError, TypeError):
            raise StartFailure(
                SECRETS_FAILED.format(
                    what="secret from asm",
                    detail=f"retrieved secret from Secrets Manager did not contain json key {key}",
                )
            ) from None

    def _pull_images(self) -> None:
        client = engine.docker_client()
        for cdef in self.definition.get("containerDefinitions", []):
            image = cdef["image"]
            auth = None
            if image.startswith(engine.Settings.registry + "/"):
                # The credentials GetAuthorizationToken hands out, as the agent uses them.
                auth = {"username": "AWS", "password": engine.Settings.registry_password}
            repository, _, tag = (
                image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
            )
            try:
                client.images.pull(repository, tag=tag, auth_config=auth)
            except Exception:
                self.containers[cdef["name"]].reason = PULL_FAILED.format(image=image)
                raise StartFailure(PULL_FAILED.format(image=image)) from None

    def _in_dependency_order(self) -> list[dict[str, Any]]:
        definitions = {c["name"]: c for c in self.definition.get("containerDefinitions", [])}
        ordered: list[dict[str, Any]] = []

        def visit(name: str, seen: tuple[str, ...] = ()) -> None:
            if name in seen or any(c["name"] == name for c in ordered):
                return
            for dep in definitions[name].get("dependsOn", []) or []:
                if dep["containerName"] in definitions:
                    visit(dep["containerName"], (*seen, name))
            ordered.append(definitions[name])

        for name in definitions:
            visit(name)
        return ordered

    def _start_container(self, cdef: dict[str, Any], secrets: dict[str, dict[str, str]]) -> None:
        for dep in cdef.get("dependsOn", []) or []:
            self._wait_for(dep["containerName"], dep.get("condition", "START"))
        client = engine.docker_client()
        environment = {e["name"]: e["value"] for e in cdef.get("environment", []) or []}
        environment.update(secrets.get(cdef["name"], {}))
        kwargs: dict[str, Any] = {}
        ports = [m["containerPort"] for m in cdef.get("portMappings", []) or [] if m.get("containerPort")]
        if engine.has_bridge():
            kwargs["ports"] = {f"{p}/tcp": ("127.0.0.1", self.port) for p in ports[:1]}
        else:
            kwargs["network_mode"] = "host"
            # The host's network is shared: bind loopback only, as ECS gives the port (PORT).
            environment["PORT"] = str(self.port)
            environment["HOST"] = "127.0.0.1"
        health = cdef.get("healthCheck")
        if health:
            command = list(health["command"])
            if not engine.has_bridge():
                command = [_to_task_port(arg, ports, self.port) for arg in command]
            self.containers[cdef["name"]].probe = Probe(
                argv=command[1:] if command[0] == "CMD" else ["/bin/sh", "-c", " ".join(command[1:])],
                interval=engine.scaled(health.get("interval", 30), self.speed),
                healthy_interval=float(health.get("interval", 30)),
                timeout=float(max(health.get("timeout", 5), 1)),  # timeouts are never sped up
                retries=int(health.get("retries", 3)),
                start_period=engine.scaled(health.get("startPeriod", 0), self.speed),
            )
        # ECS monitors only the task definition's health check, never an image's HEALTHCHECK.
        kwargs["healthcheck"] = {"test": ["NONE"]}
        family, _, version = self.definition["taskDefinitionArn"].rsplit("/", 1)[-1].partition(":")
        with engine.STARTS.making():  # a shutdown sweeps only once this container is made
            container = client.containers.create(
                cdef["image"],
                command=cdef.get("command"),
                entrypoint=cdef.get("entryPoint"),
                environment=environment,
                user=cdef.get("user") or None,
                working_dir=cdef.get("workingDirectory") or None,
                read_only=bool(cdef.get("readonlyRootFilesystem")),
                name=f"ecs-{family}-{version}-{cdef['name']}-{self.task_arn.rsplit('/', 1)[-1][:12]}",
                labels={
                    engine.OWNER_LABEL: engine.Settings.owner,
                    engine.CLUSTER_LABEL: self.cluster,
                    engine.TASK_LABEL: self.task_arn,
                    engine.CONTAINER_LABEL: cdef["name"],
                    engine.FAMILY_LABEL: family,
                    engine.VERSION_LABEL: version,
                },
                detach=True,
                **kwargs,
            )
            state = self.containers[cdef["name"]]
            state.docker_id = container.id
            if self.stopping:  # stopped while this container was being made
                container.remove(force=True)
                return
            container.start()
        # ECS's awslogs driver: the container's output goes to CloudWatch Logs.
        awslogs.ship(container, cdef, self.task_arn, self.account, self.region)
        state.status = "RUNNING"

    def _wait_for(self, name: str, condition: str) -> None:
        state = self.containers[name]
        while not self.stopping:
            self._inspect()
            if condition == "START" and state.status != "PENDING":
                return
            if condition == "HEALTHY" and state.health == "HEALTHY":
                return
            if condition in ("COMPLETE", "SUCCESS") and state.status == "STOPPED":
                if condition == "SUCCESS" and state.exit_code != 0:
                    raise StartFailure(f"dependency {name} exited with {state.exit_code}")
                return
            if state.status == "STOPPED" and condition in ("START", "HEALTHY"):
                raise StartFailure(f"dependency {name} stopped before it was {condition}")
            time.sleep(0.1)

    # --- running ----------------------------------------------------------------------

    def _inspect(self, full: bool = True) -> None:
        """Read each live container's state (all of them, or only those the engine says
        died), and step its health check."""
        client = engine.docker_client()
        for state in self.containers.values():
            if not state.docker_id or state.status == "STOPPED":
                continue
            if full or engine.EXITS.died({state.docker_id}):
                try:
                    attrs = client.api.inspect_container(state.docker_id)["State"]
                except Exception:
                    state.status, state.exit_code, state.reason = "STOPPED", 137, "container removed"
                    continue
                if not attrs.get("Running"):
                    state.status, state.exit_code = "STOPPED", int(attrs.get("ExitCode", 0))
                    if attrs.get("OOMKilled"):
                        state.reason = "OutOfMemoryError: Container killed due to memory usage"
                    continue
            if state.probe:
                state.health = state.probe.step(client, state.docker_id, state.health)

    def _watch(self) -> None:
        generation, inspected = -1, 0.0
        while not self.stopping:
            # Every container is inspected at first, after the engine's event stream
            # (re)connects, and every 5 s; in between, only one the stream says died.
            now = time.monotonic()
            full = generation != engine.EXITS.generation or now - inspected >= 5.0
            if full:
                generation, inspected = engine.EXITS.generation, now
            self._inspect(full)
            exited = [c for c in self.containers.values() if c.essential and c.status == "STOPPED"]
            if exited:
                self._finish("EssentialContainerExited", "Essential container in task exited")
                return
            # Quick while a container has not passed its first check, then enough to step
            # the checks; a death wakes the watch at once.
            starting = any(c.probe and not c.probe.healthy_once for c in self.containers.values())
            live = {c.docker_id for c in self.containers.values() if c.docker_id and c.status != "STOPPED"}
            engine.EXITS.wait(live, generation, 0.2 if starting else 0.5)

    @property
    def healthy(self) -> bool:
        """Every essential container with a health check reports HEALTHY (ECS's task health)."""
        checked = [c for c in self.containers.values() if c.essential and c.has_health_check]
        return self.phase == "RUNNING" and all(c.health == "HEALTHY" for c in checked)

    @property
    def unhealthy(self) -> bool:
        return self.phase == "RUNNING" and any(
            c.essential and c.health == "UNHEALTHY" for c in self.containers.values()
        )

    # --- stopping ---------------------------------------------------------------------

    def stop(self, stop_code: str, reason: str) -> None:
        """SIGTERM, then SIGKILL after each container's stopTimeout (ECS's default 30 s).

        A task still starting is stopped by its start-up thread once the step under way
        is done. Stopped from here, a finish could run before the start-up set RUNNING (the
        task then looked alive forever: a blue/green rollback waited on it) or before a
        container it was starting had an id (left running)."""
        with self._lock:
            if self.stopping:
                return
            self.stopping = True
            self._stop_request = (stop_code, reason)
            if not self._watching:
                return
        threading.Thread(target=self._finish, args=(stop_code, reason), daemon=True).start()

    def _finish(self, stop_code: str, reason: str) -> None:
        self.stopping = True
        if not self.stop_code:
            self.stop_code, self.stopped_reason = stop_code, reason
        client = engine.docker_client()
        timeouts = {
            c["name"]: c.get("stopTimeout", 30) for c in self.definition.get("containerDefinitions", [])
        }
        # Reverse dependency order: what others depend on stops last.
        for name in reversed([c["name"] for c in self._in_dependency_order()]):
            state = self.containers[name]
            if not state.docker_id:
                continue
            try:
                container = client.containers.get(state.docker_id)
                if state.status != "STOPPED":
                    container.stop(timeout=int(timeouts.get(name, 30)))
                attrs = client.api.inspect_container(state.docker_id)["State"]
                state.exit_code = int(attrs.get("ExitCode", 0))
                awslogs.flush(state.docker_id)  # its last lines, before the Docker log goes
                container.remove(force=True)
            except Exception:
                pass
            state.status = "STOPPED"
        for state in self.containers.values():
            state.status = "STOPPED"
        self.phase = "STOPPED"


def _to_task_port(arg: str, container_ports: list[int], port: int) -> str:
    for container_port in container_ports:
        for host in ("127.0.0.1", "localhost"):
            arg = arg.replace(f"{host}:{container_port}", f"{host}:{port}")
    return arg
