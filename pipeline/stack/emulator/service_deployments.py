"""STAND-IN for ECS's service deployments: BLUE_GREEN, LINEAR and CANARY on real containers.

An UpdateService with a new task definition on a service whose deploymentConfiguration
strategy is BLUE_GREEN, LINEAR or CANARY starts a service deployment that runs ECS's
lifecycle stages in order, one scheduler tick at a time:

  RECONCILE_SERVICE, PRE_SCALE_UP, SCALE_UP (green tasks start beside blue, registered in
  the target group the production listener rule does not send to), POST_SCALE_UP,
  TEST_TRAFFIC_SHIFT (the test listener rule forwards to green), POST_TEST_TRAFFIC_SHIFT,
  PRODUCTION_TRAFFIC_SHIFT (the production rule's forward weights move to green: all at
  once, in linearConfiguration steps, or canaryConfiguration's share then all),
  POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME, CLEAN_UP (blue deregisters and stops).

A PAUSE lifecycle hook holds its stage with the hook AWAITING_ACTION until
ContinueServiceDeployment or its timeout (timeoutConfiguration, ECS's default 24 h and
ROLLBACK). A rollback (ContinueServiceDeployment ROLLBACK, StopServiceDeployment, a
timed-out hook, the circuit breaker on failing green tasks) sends traffic back to blue
at once and stops green. Bake and hook times are scaled by the emulator's speed like
every other timing. ROLLING deployments are recorded as service deployments too.
service_deployment_api.py answers List/Describe/Continue/StopServiceDeployment.
"""

from __future__ import annotations

import copy
import datetime
import secrets
import string
import time
import uuid
from typing import Any

from . import engine, loadbalancer, scheduler

STAGES = [
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
]
NATIVE = ("BLUE_GREEN", "LINEAR", "CANARY")
ONGOING = ("PENDING", "IN_PROGRESS", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS", "STOP_REQUESTED")
# Records by ARN; each also sits in its service's `_service_deployments`, newest first.
RECORDS: dict[str, dict[str, Any]] = {}


def _now() -> Any:
    from moto.core.utils import utcnow

    return utcnow()


def strategy(service: Any) -> str:
    return str((getattr(service, "deployment_configuration", None) or {}).get("strategy") or "ROLLING")


def _arn(service: Any, kind: str, ident: str) -> str:
    return f"arn:aws:ecs:{service.region_name}:{service._account_id}:{kind}/{service.cluster_name}/{service.name}/{ident}"


def revision_arn(service: Any, deployment: dict[str, Any]) -> str:
    """ECS names a service revision by the number in its deployment's id."""
    return _arn(service, "service-revision", deployment["id"].split("/")[-1])


def _speed(service: Any) -> float:
    cluster = service._backend.clusters.get(service.cluster_name)
    return engine.cluster_speed(cluster) if cluster is not None else engine.Settings.speed


def _seconds(service: Any, minutes: float) -> float:
    return engine.scaled(float(minutes) * 60, _speed(service))


# --- traffic -----------------------------------------------------------------------------


def _routes(service: Any) -> list[dict[str, Any]]:
    """Each load balancer with advancedConfiguration: its rules and which group is blue
    (the one the production rule sends most to) and which is green (the other)."""
    routes = []
    for lb in service.load_balancers or []:
        advanced = lb.get("advancedConfiguration") or {}
        primary, alternate = lb.get("targetGroupArn"), advanced.get("alternateTargetGroupArn")
        if not (primary and alternate and advanced.get("productionListenerRule")):
            continue
        weights = dict(loadbalancer.rule_forward(advanced["productionListenerRule"]))
        blue = alternate if weights.get(alternate, 0) > weights.get(primary, 0) else primary
        routes.append(
            {
                "production": advanced["productionListenerRule"],
                "test": advanced.get("testListenerRule"),
                "blue": blue,
                "green": alternate if blue == primary else primary,
            }
        )
    return routes


def production_target_groups(service: Any) -> list[str]:
    """Where a task of the serving revision registers: the group the production rule
    sends to, whatever the strategy now (a service moved back to ROLLING after a swap
    keeps serving from the alternate group), else the load balancer's targetGroupArn."""
    routes = {r["production"]: r["blue"] for r in _routes(service)}
    arns = []
    for lb in service.load_balancers or []:
        rule = (lb.get("advancedConfiguration") or {}).get("productionListenerRule")
        arns.append(routes.get(rule) or lb.get("targetGroupArn"))
    return [a for a in arns if a]


def _shift(rec: dict[str, Any], green_percent: float, test_to_green: bool) -> None:
    green_weight = 0 if green_percent <= 0 else max(1, round(green_percent))
    for route in rec["routes"]:
        loadbalancer.set_forward(
            route["production"], [(route["blue"], 100 - green_weight), (route["green"], green_weight)]
        )
        if route["test"]:
            loadbalancer.set_forward(
                route["test"],
                [(route["blue"], 0 if test_to_green else 100), (route["green"], 100 if test_to_green else 0)],
            )
    rec["production_weight"], rec["test_weight"] = float(green_percent), 100.0 if test_to_green else 0.0


# --- the record ------------------------------------------------------------------------------


def begin(service: Any, green: dict[str, Any], blue: dict[str, Any] | None) -> dict[str, Any]:
    """A service deployment for a deployment the scheduler just started. Native strategies
    (with a blue to replace) run the lifecycle here; anything else mirrors the rollout."""
    for older in list(getattr(service, "_service_deployments", [])):
        if older["status"] in ONGOING and not older["native"]:
            _mirror(service, older)  # a rollout that completed since the last tick ended well
        if older["status"] in ONGOING:
            _supersede(service, older)
    now = _now()
    ident = "".join(secrets.choice(string.ascii_letters + string.digits + "_-") for _ in range(22))
    native = strategy(service) in NATIVE and blue is not None and bool(_routes(service))
    rec: dict[str, Any] = {
        "arn": _arn(service, "service-deployment", ident),
        "service": service,
        "native": native,
        "green": green,
        "blue": blue,
        "createdAt": now,
        "startedAt": now,
        "updatedAt": now,
        "status": "IN_PROGRESS",
        "statusReason": None,
        "stage": STAGES[0],
        "stage_done": False,
        "stage_started": time.monotonic(),
        "hooks": [],
        "hook_runs": {},
        "config": copy.deepcopy(getattr(service, "deployment_configuration", None) or {}),
        "routes": _routes(service) if native else [],
        "production_weight": 0.0,
        "test_weight": 0.0,
        "step": 0,
        "step_until": None,
        "rollback": None,
        "finishedAt": None,
    }
    RECORDS[rec["arn"]] = rec
    service._service_deployments = [rec, *getattr(service, "_service_deployments", [])][:50]
    service.current_service_deployment = rec["arn"]
    return rec


def _supersede(service: Any, rec: dict[str, Any]) -> None:
    """A newer UpdateService stops an ongoing deployment: green goes, traffic stays blue."""
    if rec["native"]:
        _shift(rec, 0, False)
        for task in _tasks(service, rec["green"]):
            scheduler._drain(service._backend, service, task, "Service deployment superseded")
        service.deployments = [d for d in service.deployments if d is not rec["green"]]
    _finish(rec, "STOPPED", "Service deployment stopped: a newer deployment superseded it.")


def service_deleted(service: Any) -> None:
    """DeleteService ends its service deployments under way; the scheduler drains the tasks."""
    for rec in getattr(service, "_service_deployments", []):
        if rec["status"] in ONGOING:
            _finish(rec, "STOPPED", "Service deployment stopped: the service was deleted.")


def _finish(rec: dict[str, Any], status: str, reason: str | None = None) -> None:
    rec.update(status=status, finishedAt=_now(), updatedAt=_now())
    if reason:
        rec["statusReason"] = reason


def _tasks(service: Any, deployment: dict[str, Any] | None) -> list[Any]:
    if deployment is None:
        return []
    return [
        t
        for t in scheduler._service_tasks(service._backend, service)
        if t.started_by == deployment["id"] and scheduler._alive(t) and t.desired_status == "RUNNING"
    ]


def _keep(service: Any, rec: dict[str, Any], deployment: dict[str, Any], groups: list[str]) -> list[Any]:
    """Keep `deployment` at the desired count, its tasks registered in `groups`."""
    tasks = _tasks(service, deployment)
    backend = service._backend
    if time.monotonic() >= scheduler._state(service)["retry_at"]:
        cluster = backend.clusters[service.cluster_name]
        for _ in range(max(0, service.desired_count - len(tasks))):
            definition = backend.describe_task_definition(deployment["taskDefinition"])
            task = scheduler.launch(
                backend,
                cluster,
                definition,
                f"service:{service.name}",
                deployment["id"],
                service.launch_type or "FARGATE",
                service.network_configuration,
            )
            task._lbs = list(service.load_balancers or [])
            task._register_in = list(groups)
            tasks.append(task)
            scheduler.event(service, f"has started 1 tasks: (task {task.id}).")
    scheduler._register_targets(backend, service, tasks)
    return tasks


# --- the lifecycle ---------------------------------------------------------------------------


def drive(backend: Any, service: Any) -> bool:
    """One scheduler tick for the service's ongoing service deployment. True when it
    drives the service (a native strategy), False when the rolling scheduler does."""
    recs = [r for r in getattr(service, "_service_deployments", []) if r["status"] in ONGOING]
    for rec in recs:
        if not rec["native"]:
            _mirror(service, rec)
    rec = next((r for r in recs if r["native"]), None)
    if rec is None:
        return False
    with engine.LOCK:
        if rec["status"] == "ROLLBACK_IN_PROGRESS":
            _rolling_back(service, rec)
        else:
            _step(service, rec)
        _counts(service, rec)
    return True


def _step(service: Any, rec: dict[str, Any]) -> None:
    green_groups = [r["green"] for r in rec["routes"]]
    blue_groups = [r["blue"] for r in rec["routes"]]
    if STAGES.index(rec["stage"]) >= STAGES.index("SCALE_UP"):
        _keep(service, rec, rec["green"], green_groups)
        if _breaker_tripped(service, rec):
            return
    if STAGES.index(rec["stage"]) < STAGES.index("CLEAN_UP"):
        _keep(service, rec, rec["blue"], blue_groups)
    stage = rec["stage"]
    if stage == "PRODUCTION_TRAFFIC_SHIFT" and not _hooks(service, rec, "PRE_PRODUCTION_TRAFFIC_SHIFT"):
        return
    if not rec["stage_done"]:
        if not _act(service, rec, stage):
            return
        rec["stage_done"] = True
    if not _hooks(service, rec, stage):
        return
    if stage == STAGES[-1]:
        _succeed(service, rec)
        return
    rec.update(stage=STAGES[STAGES.index(stage) + 1], stage_done=False, stage_started=time.monotonic())
    rec["updatedAt"] = _now()


def _act(service: Any, rec: dict[str, Any], stage: str) -> bool:
    """A stage's own work; True once it is done."""
    config = rec["config"]
    if stage == "SCALE_UP":
        healthy = [t for t in _tasks(service, rec["green"]) if scheduler._counts(t)]
        return len(healthy) >= service.desired_count
    if stage == "TEST_TRAFFIC_SHIFT":
        _shift(rec, 0, True)
        return True
    if stage == "PRODUCTION_TRAFFIC_SHIFT":
        return _production_step(service, rec)
    if stage == "BAKE_TIME":
        bake = _seconds(service, config.get("bakeTimeInMinutes") or 0)
        return time.monotonic() - rec["stage_started"] >= bake
    if stage == "CLEAN_UP":
        for task in _tasks(service, rec["blue"]):
            scheduler._drain(
                service._backend,
                service,
                task,
                f"Scaling activity initiated by (deployment {rec['green']['id']})",
            )
        return not any(scheduler._alive(t) for t in _all_tasks(service, rec["blue"]))
    return True


def steps(config: dict[str, Any]) -> list[tuple[float, float]]:
    """(green share %, bake minutes after it) for the production traffic shift."""
    kind = config.get("strategy")
    if kind == "CANARY":
        canary = config.get("canaryConfiguration") or {}
        return [
            (float(canary.get("canaryPercent", 5.0)), float(canary.get("canaryBakeTimeInMinutes", 10))),
            (100.0, 0.0),
        ]
    if kind == "LINEAR":
        linear = config.get("linearConfiguration") or {}
        step, bake = float(linear.get("stepPercent", 10.0)), float(linear.get("stepBakeTimeInMinutes", 6))
        shares, share = [], step
        while share < 100.0 - 1e-9:
            shares.append((round(share, 1), bake))
            share += step
        return [*shares, (100.0, 0.0)]
    return [(100.0, 0.0)]


def _production_step(service: Any, rec: dict[str, Any]) -> bool:
    if rec["step_until"] is not None and time.monotonic() < rec["step_until"]:
        return False
    plan = steps(rec["config"])
    share, bake = plan[min(rec["step"], len(plan) - 1)]
    _shift(rec, share, True)
    scheduler.event(
        service, f"(service deployment {rec['arn'].split('/')[-1]}) shifted {share:g}% of production traffic."
    )
    rec["step"] += 1
    if share >= 100.0:
        return True
    rec["step_until"] = time.monotonic() + _seconds(service, bake)
    return False


def _hooks(service: Any, rec: dict[str, Any], stage: str) -> bool:
    """Run the stage's hooks once; True when none holds the deployment."""
    runs = rec["hook_runs"]
    if stage not in runs:
        runs[stage] = []
        for hook in rec["config"].get("lifecycleHooks") or []:
            if stage not in (hook.get("lifecycleStages") or []):
                continue
            timeout = hook.get("timeoutConfiguration") or {}
            seconds = _seconds(service, int(timeout.get("timeoutInMinutes") or 1440))
            detail = {
                "hookId": str(uuid.uuid4()),
                "targetType": hook.get("targetType", "PAUSE"),
                "status": "AWAITING_ACTION",
                "expiresAt": _now() + datetime.timedelta(seconds=seconds),
                "timeoutAction": timeout.get("action") or "ROLLBACK",
                "_expires": time.monotonic() + seconds,
            }
            if hook.get("hookTargetArn"):
                detail["targetArn"] = hook["hookTargetArn"]
            runs[stage].append(detail)
            rec["hooks"].append(detail)
            rec["updatedAt"] = _now()
    for detail in runs[stage]:
        if detail["status"] == "AWAITING_ACTION" and time.monotonic() >= detail["_expires"]:
            detail["status"] = "TIMED_OUT"
            if detail["timeoutAction"] == "ROLLBACK":
                roll_back(service, rec, f"Lifecycle hook {detail['hookId']} timed out at {stage}.")
                return False
    return all(d["status"] in ("SUCCEEDED", "TIMED_OUT") for d in runs[stage])


def _breaker_tripped(service: Any, rec: dict[str, Any]) -> bool:
    breaker = rec["config"].get("deploymentCircuitBreaker") or {}
    if not breaker.get("enable"):
        return False
    if rec["green"].get("failedTasks", 0) < engine.circuit_breaker_threshold(service.desired_count):
        return False
    roll_back(service, rec, "ECS deployment circuit breaker: tasks failed to start.")
    return True


def _succeed(service: Any, rec: dict[str, Any]) -> None:
    green = rec["green"]
    green.update(
        rolloutState="COMPLETED",
        rolloutStateReason=f"ECS deployment {green['id']} completed.",
        updatedAt=_now(),
    )
    service.deployments = [green]
    service._last_completed = green["taskDefinition"]
    _finish(rec, "SUCCESSFUL", "Service deployment completed successfully.")
    scheduler.event(service, f"(deployment {green['id']}) deployment completed.")


def roll_back(service: Any, rec: dict[str, Any], reason: str) -> None:
    """Traffic back to blue at once, green stopped; blue is the PRIMARY deployment again."""
    now = _now()
    for detail in rec["hooks"]:
        if detail["status"] in ("AWAITING_ACTION", "IN_PROGRESS"):
            detail["status"] = "FAILED"
    _shift(rec, 0, False)
    rec.update(
        status="ROLLBACK_IN_PROGRESS",
        statusReason=reason,
        updatedAt=now,
        rollback={
            "reason": reason,
            "startedAt": now,
            "serviceRevisionArn": revision_arn(service, rec["blue"]),
        },
    )
    green, blue = rec["green"], rec["blue"]
    for task in _tasks(service, green):
        scheduler._drain(service._backend, service, task, f"Rolling back (deployment {green['id']})")
    green.update(status="ACTIVE", rolloutState="FAILED", rolloutStateReason=reason, updatedAt=now)
    blue.update(status="PRIMARY", updatedAt=now)
    service.deployments = [blue, green]
    service.task_definition = blue["taskDefinition"]
    scheduler.event(
        service,
        f"(deployment {green['id']}) deployment failed: {reason} Rolling back to (deployment {blue['id']}).",
    )


def _all_tasks(service: Any, deployment: dict[str, Any]) -> list[Any]:
    return [
        t for t in scheduler._service_tasks(service._backend, service) if t.started_by == deployment["id"]
    ]


def _rolling_back(service: Any, rec: dict[str, Any]) -> None:
    _keep(service, rec, rec["blue"], [r["blue"] for r in rec["routes"]])
    if any(scheduler._alive(t) for t in _all_tasks(service, rec["green"])):
        return
    service.deployments = [rec["blue"]]
    _finish(rec, "ROLLBACK_SUCCESSFUL")
    scheduler.event(service, f"(deployment {rec['blue']['id']}) rollback completed.")


def _counts(service: Any, rec: dict[str, Any]) -> None:
    scheduler._count(service, scheduler._service_tasks(service._backend, service))
    if rec["status"] == "IN_PROGRESS" and STAGES.index(rec["stage"]) < STAGES.index("CLEAN_UP"):
        rec["blue"]["desiredCount"] = service.desired_count  # blue keeps serving until clean-up


def _mirror(service: Any, rec: dict[str, Any]) -> None:
    """A rolling (or first) deployment's service deployment follows its rolloutState."""
    deployment = rec["green"]
    if deployment not in service.deployments and rec["status"] == "IN_PROGRESS":
        _finish(rec, "STOPPED", "Service deployment stopped: a newer deployment superseded it.")
    elif deployment.get("rolloutState") == "COMPLETED":
        _finish(rec, "SUCCESSFUL", "Service deployment completed successfully.")
    elif deployment.get("rolloutState") == "FAILED":
        breaker = rec["config"].get("deploymentCircuitBreaker") or {}
        if breaker.get("rollback") and rec["blue"] is not None:
            rec["rollback"] = rec["rollback"] or {
                "reason": deployment.get("rolloutStateReason"),
                "startedAt": _now(),
                "serviceRevisionArn": revision_arn(service, rec["blue"]),
            }
            rec.update(status="ROLLBACK_IN_PROGRESS", statusReason=deployment.get("rolloutStateReason"))
            primary = service.deployments[0] if service.deployments else {}
            if primary.get("rolloutState") == "COMPLETED":
                _finish(rec, "ROLLBACK_SUCCESSFUL")
        else:
            _finish(rec, "STOPPED", deployment.get("rolloutStateReason"))
