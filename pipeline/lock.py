"""The deploy lock: one holder per environment's service for the whole change window.

A deploy, rollback or release holds it from its check, through the migration, the update
and the wait, to the smoke test and any rollback: two pipelines never run migrations at
once, and the second never decides from a service the first is about to change. The ECS
deployments guard (pipeline/safety.py) stays as the second line, against deploys by
other tools that take no lock.

The lock is an SSM parameter, `/ecs-pipeline/deploy-lock/<cluster>/<service>`, created
with `Overwrite=false`: AWS creates it for exactly one caller and answers
ParameterAlreadyExists to every other, so it needs no new infrastructure. Its value says
who holds it (CI build URL or user@host), the sha, pid, host, when it started and when it
expires. The holder renews the expiry while it works; a lock whose holder was killed is
stale once it expires (at once, on the same host, when its pid is gone), and the next
deploy takes it over, saying so. `invoke lock.status | lock.acquire | lock.release [--force]` is the
by-hand side (Kamal's lock is the model): a lock acquired by a person has no pid and lasts
until released or expired.

Taking over a stale lock deletes it and creates ours; two pipelines doing so at the same
moment could both succeed only if one's delete lands between the other's delete and
create, which needs two stale takeovers within milliseconds of each other.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .clients import aws_errors
from .config import Environment
from .context import Context
from .errors import DeployLocked, NotFound
from .output import when

ROOT = "/ecs-pipeline/deploy-lock"
TTL = 300.0  # seconds a lock lives unless renewed; its holder renews it every TTL / 5
BY_HAND_TTL = 3600.0  # `invoke lock acquire`: an hour unless --minutes says otherwise


def name(env: Environment) -> str:
    """The parameter that is the lock of an environment's service."""
    return f"{ROOT}/{env.cluster}/{env.service}"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: what the parameter's value records."""

    token: str  # this holder's own id: only it renews or releases the lock
    who: str  # CI build URL, or user@host
    action: str  # "deploy", "rollback", "release", "held by hand: <message>"
    sha: str
    host: str
    pid: int  # 0: held by a person, not by a running process
    started: datetime
    expires: datetime

    def to_json(self) -> str:
        data = asdict(self)
        data["started"], data["expires"] = self.started.isoformat(), self.expires.isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """None when the value is not a lock record (then it is treated as stale)."""
        try:
            data = json.loads(text)
            data["started"] = datetime.fromisoformat(data["started"])
            data["expires"] = datetime.fromisoformat(data["expires"])
            return cls(**data)
        except (ValueError, TypeError, KeyError):
            return None

    def line(self) -> str:
        sha = f" of sha {self.sha[:12]}" if self.sha else ""
        process = f"pid {self.pid} on {self.host}" if self.pid else f"by hand on {self.host}"
        return f"{self.who} ({self.action}{sha}, {process}, since {when(self.started)}, expires {when(self.expires)})"

    def stale(self, now: datetime, host: str) -> bool:
        """Expired, or its process is gone from this very host."""
        return now >= self.expires or (self.pid != 0 and self.host == host and not _alive(self.pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def me(ctx: Context, action: str, sha: str, ttl: float = TTL, by_hand: bool = False) -> Holder:
    """This process (or, by hand, this person) as a lock holder."""
    host = socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = "unknown"
    now = datetime.now(UTC)
    return Holder(
        token=uuid.uuid4().hex,
        who=ctx.environ.get("CIRCLE_BUILD_URL") or f"{user}@{host}",
        action=action,
        sha=sha,
        host=host,
        pid=0 if by_hand else os.getpid(),
        started=now,
        expires=now + timedelta(seconds=ttl),
    )


def read(ctx: Context, lock: str) -> Holder | None:
    """The lock's holder; None when nobody holds it. A value that is no lock record reads as
    an expired holder, so it is taken over rather than blocking for ever."""
    ssm = ctx.clients.aws("ssm")
    with aws_errors("ssm:GetParameter", handled=("ParameterNotFound",)):
        try:
            value = ssm.get_parameter(Name=lock)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            return None
    epoch = datetime.fromtimestamp(0, UTC)
    return Holder.from_json(value) or Holder("", value[:60], "unknown", "", "", 0, epoch, epoch)


def _create(ctx: Context, lock: str, holder: Holder) -> bool:
    """Atomically create the lock for `holder`; False when it exists already."""
    ssm = ctx.clients.aws("ssm")
    with aws_errors("ssm:PutParameter", handled=("ParameterAlreadyExists",)):
        try:
            ssm.put_parameter(
                Name=lock,
                Value=holder.to_json(),
                Type="String",
                Overwrite=False,
                Description="ecs-pipeline deploy lock: who holds the change window (invoke lock status)",
            )
        except ssm.exceptions.ParameterAlreadyExists:
            return False
    return True


def _delete(ctx: Context, lock: str) -> None:
    ssm = ctx.clients.aws("ssm")
    # Released meanwhile is the same end.
    with (
        aws_errors("ssm:DeleteParameter", handled=("ParameterNotFound",)),
        contextlib.suppress(ssm.exceptions.ParameterNotFound),
    ):
        ssm.delete_parameter(Name=lock)


def _take_one(
    ctx: Context, lock: str, holder: Holder, wait: bool, deadline: float, sleep: Callable[[float], None]
) -> None:
    said_waiting = False
    pause = 0.5
    while True:
        if _create(ctx, lock, holder):
            return
        other = read(ctx, lock)
        if other is None:
            continue  # released between our create and our read: try again at once
        if other.stale(datetime.now(UTC), holder.host):
            current = read(ctx, lock)
            if current is not None and current.token == other.token:  # still the stale one
                ctx.out.warn(f"taking over the stale deploy lock {lock} of {other.line()}")
                _delete(ctx, lock)
            continue
        if not wait or time.monotonic() >= deadline:
            waited = " after --wait" if wait else ""
            raise DeployLocked(
                f"the deploy lock {lock} is held by {other.line()}{waited}; nothing was changed. "
                "Wait for it with --wait; if its holder is gone, "
                "`invoke lock.release --env ENV --force` breaks it"
            )
        if not said_waiting:
            ctx.out.detail(f"waiting for the deploy lock {lock}, held by {other.line()}")
            said_waiting = True
        sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 5.0)


def acquire(
    ctx: Context,
    locks: list[str],
    holder: Holder,
    wait: bool = False,
    timeout: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take every lock in `locks`, in one order (sorted: two releases never each hold one
    the other needs); on failure the ones taken are released and the error raised."""
    deadline = time.monotonic() + timeout
    taken: list[str] = []
    try:
        for lock in sorted(set(locks)):
            _take_one(ctx, lock, holder, wait, deadline, sleep)
            taken.append(lock)
    except BaseException:
        release(ctx, taken, holder)
        raise


def release(ctx: Context, locks: list[str], holder: Holder) -> None:
    """Give back the locks `holder` still holds (never another's); never raises: a lock left
    behind only waits for its expiry, which the warning names."""
    for lock in locks:
        try:
            current = read(ctx, lock)
            if current is not None and current.token == holder.token:
                _delete(ctx, lock)
        except Exception as exc:
            from .safety import one_line

            ctx.out.warn(
                f"could not release the deploy lock {lock}: {one_line(exc)}; it expires at "
                f"{when(holder.expires)}, or `invoke lock.release --force` breaks it"
            )


def _renew(ctx: Context, locks: list[str], holder: Holder, ttl: float, stop: threading.Event) -> None:
    """Push the expiry forward while the holder works (a thread); a failure to renew is
    retried on the next round, and the lock stays valid until its current expiry."""
    ssm = ctx.clients.aws("ssm")
    while not stop.wait(ttl / 5):
        renewed = replace(holder, expires=datetime.now(UTC) + timedelta(seconds=ttl))
        for lock in locks:
            try:
                current = read(ctx, lock)
                if current is not None and current.token == holder.token:
                    ssm.put_parameter(Name=lock, Value=renewed.to_json(), Type="String", Overwrite=True)
            except Exception:  # noqa: S112 - an outage: the next round tries again
                continue


@contextmanager
def held(
    ctx: Context,
    locks: list[str],
    action: str,
    sha: str,
    wait: bool = False,
    timeout: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    ttl: float = TTL,
) -> Iterator[Holder]:
    """Within: this process holds every lock in `locks`, renewed until it leaves."""
    holder = me(ctx, action, sha, ttl)
    acquire(ctx, locks, holder, wait, timeout, sleep)
    ctx.clients.aws("ssm")  # made here: creating clients is not thread-safe
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(ctx, locks, holder, ttl, stop), daemon=True)
    renewer.start()
    try:
        yield holder
    finally:
        stop.set()
        renewer.join(timeout=5)
        release(ctx, locks, holder)


def break_lock(ctx: Context, lock: str, force: bool, who: str) -> Holder:
    """`invoke lock release`: a person's own lock, or (with force) anyone's. The holder it was."""
    current = read(ctx, lock)
    if current is None:
        raise NotFound(f"the deploy lock {lock} is not held; nothing to release")
    if not force and (current.pid != 0 or current.who != who):
        raise DeployLocked(
            f"the deploy lock {lock} is held by {current.line()}, not by you by hand; "
            "pass --force to break it (only when that holder is gone)"
        )
    _delete(ctx, lock)
    return current


def status_record(holder: Holder | None, lock: str) -> dict[str, Any]:
    """`invoke lock status --json`. Pure."""
    if holder is None:
        return {"lock": lock, "held": False}
    return {"lock": lock, "held": True, **json.loads(holder.to_json())}
