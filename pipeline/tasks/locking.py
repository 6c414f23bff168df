"""The deploy lock by hand: lock.status, lock.acquire, lock.release (Kamal's lock, for people)."""

from __future__ import annotations

from ._base import context, task, verb


@task(
    name="status", help={"env": "environment whose service's lock to show", "json": "print one JSON object"}
)
@verb
def lock_status(c, env, json=False):
    """Show who holds an environment's deploy lock: who, what, sha, pid and host, since, expires."""
    import json as jsonlib

    from pipeline import lock

    ctx = context(environment=env)
    name = lock.name(ctx.settings.environment(env))
    holder = lock.read(ctx, name)
    if json:
        print(jsonlib.dumps(lock.status_record(holder, name), indent=2))
    else:
        print(f"{env}: {name} is " + (f"held by {holder.line()}" if holder else "free"))


@task(
    name="acquire",
    help={
        "env": "environment whose service's lock to take",
        "message": "why you hold it, shown to every deploy it stops (e.g. 'database maintenance')",
        "minutes": "release it by itself after this many minutes (default 60)",
    },
)
@verb
def lock_acquire(c, env, message="", minutes=60):
    """Hold an environment's deploy lock by hand: deploys, rollbacks and releases are refused until released."""
    from pipeline import lock
    from pipeline.errors import DeployLocked

    ctx = context(environment=env)
    name = lock.name(ctx.settings.environment(env))
    action = f"held by hand: {message}" if message else "held by hand"
    holder = lock.me(ctx, action, "", ttl=float(minutes) * 60, by_hand=True)
    lock.acquire(ctx, [name], holder)
    if lock.read(ctx, name) != holder:  # a stale lock taken over by someone else meanwhile
        raise DeployLocked(f"the deploy lock {name} was taken by another holder meanwhile")
    print(f"{env}: {name} is held by {holder.line()}; `invoke lock.release --env {env}` gives it back")


@task(
    name="release",
    help={
        "env": "environment whose service's lock to give back",
        "force": "break the lock whoever holds it (only when its holder is gone: a killed pipeline)",
    },
)
@verb
def lock_release(c, env, force=False):
    """Give back an environment's deploy lock you hold by hand; --force breaks anyone's."""
    from pipeline import lock

    ctx = context(environment=env)
    name = lock.name(ctx.settings.environment(env))
    who = lock.me(ctx, "", "").who
    was = lock.break_lock(ctx, name, force, who)
    print(f"{env}: released {name}, which was held by {was.line()}")
