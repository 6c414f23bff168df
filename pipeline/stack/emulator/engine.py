"""STAND-IN for ECS's container instance: the local Docker engine the tasks run on.

What every other stand-in shares: the lock that serialises changes to moto's state,
the speed-up factor for health-check and deregistration timings, the engine, and the
label that marks the containers this emulator started (so that it, `stack.down` and the
tests remove exactly those and never a container someone else started).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

# moto's backends are plain objects; the API threads and the scheduler's thread change
# them, so every change and every read that must see a consistent state takes this.
LOCK = threading.RLock()


def one_request_at_a_time() -> None:
    """Each API request runs under LOCK, as each AWS request sees and leaves a consistent
    state. moto's server answers on a thread per request over the same dicts: a
    DescribeStacks iterating while a CreateStack added a stack, or a DescribeTasks while the
    scheduler launched a task, failed with "dictionary changed size during iteration" and
    a 500 whose HTML botocore cannot parse (six times in a day of full runs here; one failed
    a teardown test). The handlers never wait on I/O (task starts and stops run on their own
    threads), so holding it costs only the queueing of CPU work the GIL serialises anyway."""
    from moto.core import responses

    dispatch = responses.BaseResponse._dispatch

    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return dispatch(self, *args, **kwargs)

    responses.BaseResponse._dispatch = locked  # type: ignore[method-assign]


OWNER_LABEL = "ecs-pipeline.emulator"
CLUSTER_LABEL = "com.amazonaws.ecs.cluster"
TASK_LABEL = "com.amazonaws.ecs.task-arn"
CONTAINER_LABEL = "com.amazonaws.ecs.container-name"
FAMILY_LABEL = "com.amazonaws.ecs.task-definition-family"
VERSION_LABEL = "com.amazonaws.ecs.task-definition-version"

# A cluster tag that sets the factor for that cluster's services (1: ECS's real timings).
SPEED_TAG = "ecs-pipeline:emulator-speed"


class Settings:
    """Set once by main(): who this emulator is, and how fast local timings run."""

    owner = "http://127.0.0.1:4566"
    speed = 10.0
    registry = "127.0.0.1:5000"
    registry_password = "123456789012-auth-token"


_client: Any = None
_bridge: bool | None = None


def docker_client() -> Any:
    global _client
    if _client is None:
        import docker

        _client = docker.from_env(timeout=120)
    return _client


def has_bridge() -> bool:
    """A laptop's engine has the default bridge; this machine's and CI's have none."""
    global _bridge
    if _bridge is None:
        names = {n.name for n in docker_client().networks.list()}
        _bridge = "bridge" in names and os.environ.get("EMULATOR_FORCE_HOST_NETWORK") != "1"
    return _bridge


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scaled(seconds: float, speed: float) -> float:
    return max(float(seconds), 0.0) / max(speed, 1.0)


def cluster_speed(cluster: Any) -> float:
    for tag in getattr(cluster, "tags", None) or []:
        if tag.get("key") == SPEED_TAG:
            try:
                return max(float(tag.get("value", "1")), 1.0)
            except ValueError:
                return 1.0
    return Settings.speed


def circuit_breaker_threshold(desired: int) -> int:
    """ECS's failed-task threshold: 0.5 x desired count, at least 3, at most 200."""
    return min(200, max(3, math.ceil(desired * 0.5)))


def own_containers(cluster: str | None = None) -> list[Any]:
    labels = [f"{OWNER_LABEL}={Settings.owner}"]
    if cluster:
        labels.append(f"{CLUSTER_LABEL}={cluster}")
    # sparse: the engine's list as it is, no inspect of each (one removed meanwhile, by its
    # task stopping, would fail the whole listing)
    return list(docker_client().containers.list(all=True, sparse=True, filters={"label": labels}))


class Closed(Exception):
    """The emulator is shutting down: no task makes a container any more."""


class Starts:
    """Containers being made. At shutdown no new one begins and the ones under way finish
    before the sweep, which then sees them: a task replaced just as SIGTERM came left its
    container behind when it was made after the sweep had listed ours."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._under_way = 0
        self._closed = False

    @contextlib.contextmanager
    def making(self) -> Iterator[None]:
        with self._changed:
            if self._closed:
                raise Closed
            self._under_way += 1
        try:
            yield
        finally:
            with self._changed:
                self._under_way -= 1
                self._changed.notify_all()

    def close(self, timeout: float) -> None:
        with self._changed:
            self._closed = True
            self._changed.wait_for(lambda: self._under_way == 0, timeout)


STARTS = Starts()


def shut_down() -> int:
    """At exit: no container is made any more, then every one of ours goes."""
    STARTS.close(timeout=30)
    return remove_own_containers()


def remove_own_containers() -> int:
    """At start-up and shutdown: the emulator's state is gone, so are its tasks."""
    removed = 0
    for container in own_containers():
        try:
            container.remove(force=True)
            removed += 1
        except Exception:  # already gone
            pass
    return removed


class Exits:
    """Which of this emulator's containers have died, from the engine's event stream: one
    connection for every task, where an inspect per container twice a second was a fifth of
    the emulator's CPU and load on the engine. A watcher still inspects now and then, and
    after the stream reconnects, so a lost event costs seconds, never a task."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._died: dict[str, None] = {}  # insertion-ordered, bounded: the newest deaths
        self.generation = 0  # counts (re)connections: events may have been missed before each
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name="engine-events", daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        import time

        filters = {"type": "container", "event": ["die"], "label": [f"{OWNER_LABEL}={Settings.owner}"]}
        while True:
            try:
                events = docker_client().events(decode=True, filters=filters)
                with self._changed:
                    self.generation += 1
                    self._changed.notify_all()
                for event in events:
                    with self._changed:
                        self._died[str(event.get("id", ""))] = None
                        while len(self._died) > 4096:
                            del self._died[next(iter(self._died))]
                        self._changed.notify_all()
            except Exception:  # the engine restarted or the connection dropped
                pass
            time.sleep(0.5)

    def died(self, container_ids: set[str]) -> bool:
        with self._changed:
            return any(c in self._died for c in container_ids)

    def wait(self, container_ids: set[str], generation: int, timeout: float) -> None:
        """Until one of these containers dies, the stream reconnects, or the timeout."""
        with self._changed:
            self._changed.wait_for(
                lambda: self.generation != generation or any(c in self._died for c in container_ids),
                timeout,
            )


EXITS = Exits()
