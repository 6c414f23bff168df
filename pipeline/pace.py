"""When to poll DescribeServices next, from what the service says about its rollout. Pure.

A rollout cannot complete before its new tasks are RUNNING, and (behind a load balancer)
before the old tasks have drained for the target group's deregistration delay; the
health check grace period passes before the new tasks count as healthy. While completion
is impossible, polling often only spends API calls (ECS throttles DescribeServices per
account, and a fleet shares that budget); once it is possible, a poll every FAST seconds
answers within about FAST/2 of the completion. The schedule:

  * the first polls ramp up (0.5, 1, 2 s apart): short rollouts and early failures are
    seen at once;
  * our deployment's tasks not all RUNNING yet: every SLOW seconds (ramping up to it);
  * all RUNNING: completion is possible from the moment they became RUNNING plus
    max(grace period, deregistration delay). That moment is after the poll before (which
    still saw them PENDING) and, by the deployment's `updatedAt` (ECS stamps it when the
    counts change), no earlier than that stamp less SKEW for the clocks; the later of the
    two is used. Until then it sleeps towards it (at most SLOW at a time, so failures
    still show), then polls every FAST seconds.

Over a rollout of 30 s–10 min that is at most 60/SLOW calls a minute while tasks start
and drain, FAST-spaced calls only in the second or two around the completion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SLOW = 5.0
FAST = 0.5
RAMP = (0.5, 1.0, 2.0)
SKEW = 1.0  # seconds this machine's clock may be ahead of AWS's


@dataclass
class Pace:
    """One service's schedule; `next` is called after each poll with its answer."""

    slow: float = SLOW
    fast: float = FAST
    drain: float = 0.0  # the target group's deregistration delay, when known
    # Looks the delay up (DescribeTargetGroupAttributes) the first time it matters: only
    # rollouts behind a load balancer that are still draining pay that call.
    drain_lookup: Callable[[dict[str, Any]], float] | None = None
    polls: int = 0
    last_poll: float | None = None
    possible_at: float | None = None  # earliest time the rollout can complete

    def next(
        self, service: dict[str, Any] | None, deployment_id: str, now: float, wall: datetime | None = None
    ) -> float:
        """Seconds to wait before the next poll, given this poll's answer at `now` (a
        monotonic clock); `wall` is the time of day then, to read the answer's time stamps."""
        self.polls += 1
        previous, self.last_poll = self.last_poll, now
        ramp = RAMP[min(self.polls, len(RAMP)) - 1] if self.polls <= len(RAMP) else None
        ours = _ours(service, deployment_id)
        if ours is None:  # not seen (throttled, or gone: the caller decides) — look again soon
            return ramp or self.fast
        if ours.get("runningCount", 0) < ours.get("desiredCount", 0) or ours.get("pendingCount", 0):
            self.possible_at = None
            return min(ramp or self.slow, self.slow)
        if self.possible_at is None:
            grace = float((service or {}).get("healthCheckGracePeriodSeconds") or 0)
            stale = any(
                d.get("id") != deployment_id and d.get("runningCount", 0) > 0
                for d in (service or {}).get("deployments", [])
            )
            if stale and self.drain_lookup is not None and service and service.get("loadBalancers"):
                self.drain, self.drain_lookup = self.drain_lookup(service), None
            wait = max(grace, self.drain if stale else 0.0)
            running_since = previous if previous is not None else now
            stamped = ours.get("updatedAt")
            if wall is not None and isinstance(stamped, datetime) and stamped.tzinfo is not None:
                running_since = max(running_since, now - (wall - stamped).total_seconds() - SKEW)
            self.possible_at = running_since + wait
        left = self.possible_at - now
        if left > self.fast:
            return min(left - self.fast / 2, self.slow)
        return self.fast


def _ours(service: dict[str, Any] | None, deployment_id: str) -> dict[str, Any] | None:
    if not service:
        return None
    return next((d for d in service.get("deployments", []) if d.get("id") == deployment_id), None)


def schedule(phases: list[tuple[float, dict[str, Any]]], deployment_id: str, horizon: float) -> list[float]:
    """Poll times (s after the update) for a scripted rollout: `phases` lists (from second,
    service answer); the answer at a time is the last phase started by then. For the
    benchmark report's reasoning; the deploy itself uses `Pace.next`."""
    pace, now, times = Pace(), 0.0, []
    while now <= horizon:
        times.append(now)
        answer = [shown for start, shown in phases if start <= now][-1]
        now += pace.next(answer, deployment_id, now)
    return times
