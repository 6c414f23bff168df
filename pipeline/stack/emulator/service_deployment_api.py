"""STAND-IN for ECS's service-deployment API: ListServiceDeployments,
DescribeServiceDeployments, ContinueServiceDeployment and StopServiceDeployment in ECS's
shapes, over the records service_deployments.py keeps; and DescribeServices'
currentServiceRevisions. moto's ECS response class dispatches an action by its name, so
each action is a method added to it.
"""

from __future__ import annotations

from typing import Any

from . import engine, scheduler, service_deployments
from .service_deployments import ONGOING, RECORDS, _now, revision_arn, roll_back


def describe(rec: dict[str, Any]) -> dict[str, Any]:
    service = rec["service"]

    def summary(deployment: dict[str, Any], production: float, test: float) -> dict[str, Any]:
        return {
            "arn": revision_arn(service, deployment),
            "requestedTaskCount": deployment.get("desiredCount", 0),
            "runningTaskCount": deployment.get("runningCount", 0),
            "pendingTaskCount": deployment.get("pendingCount", 0),
            "requestedProductionTrafficWeight": production,
            "requestedTestTrafficWeight": test,
        }

    green_production = rec["production_weight"] if rec["native"] else 100.0
    green_test = rec["test_weight"] if rec["native"] else 100.0
    answer = {
        "serviceDeploymentArn": rec["arn"],
        "serviceArn": service.arn,
        "clusterArn": service.cluster_arn,
        "createdAt": rec["createdAt"],
        "startedAt": rec["startedAt"],
        "updatedAt": rec["updatedAt"],
        "sourceServiceRevisions": (
            [summary(rec["blue"], 100.0 - green_production, 100.0 - green_test)] if rec["blue"] else []
        ),
        "targetServiceRevision": summary(rec["green"], green_production, green_test),
        "status": rec["status"],
        "deploymentConfiguration": rec["config"],
        "lifecycleHookDetails": [{k: v for k, v in d.items() if not k.startswith("_")} for d in rec["hooks"]],
    }
    if rec["native"]:
        answer["lifecycleStage"] = rec["stage"]
    for key in ("statusReason", "finishedAt", "rollback"):
        if rec[key]:
            answer[key] = rec[key]
    if rec["status"] == "STOPPED":
        answer["stoppedAt"] = rec["finishedAt"]
    breaker = rec["config"].get("deploymentCircuitBreaker") or {}
    answer["deploymentCircuitBreaker"] = {
        "status": (
            "DISABLED"
            if not breaker.get("enable")
            else ("TRIGGERED" if "circuit breaker" in (rec["statusReason"] or "") else "MONITORING")
        ),
        "failureCount": rec["green"].get("failedTasks", 0),
        "threshold": engine.circuit_breaker_threshold(service.desired_count),
    }
    return answer


def brief(rec: dict[str, Any]) -> dict[str, Any]:
    full = describe(rec)
    keys = (
        "serviceDeploymentArn",
        "serviceArn",
        "clusterArn",
        "startedAt",
        "createdAt",
        "finishedAt",
        "status",
        "statusReason",
    )
    return {
        **{k: full[k] for k in keys if k in full},
        "targetServiceRevisionArn": full["targetServiceRevision"]["arn"],
    }


def _found(arn: str) -> dict[str, Any]:
    rec = RECORDS.get(arn or "")
    if rec is None:
        from moto.ecs.exceptions import ECSException

        raise ECSException("ServiceDeploymentNotFoundException", f"Service deployment {arn} not found.")
    return rec


def list_deployments(
    backend: Any, cluster: str | None, service_name: str, statuses: list[str] | None
) -> list[dict[str, Any]]:
    service = backend._get_service(cluster or "default", service_name.split("/")[-1])
    recs = getattr(service, "_service_deployments", [])
    return [brief(r) for r in recs if not statuses or r["status"] in statuses]


def continue_deployment(arn: str, hook_id: str, action: str | None) -> str:
    from moto.ecs.exceptions import ECSException, InvalidParameterException

    with engine.LOCK:
        rec = _found(arn)
        detail = next((d for d in rec["hooks"] if d["hookId"] == hook_id), None)
        if detail is None:
            raise InvalidParameterException(
                f"Lifecycle hook {hook_id} not found in service deployment {arn}."
            )
        if rec["status"] != "IN_PROGRESS" or detail["status"] != "AWAITING_ACTION":
            raise ECSException(
                "ConflictException",
                f"The lifecycle hook {hook_id} is not in AWAITING_ACTION status, or the service deployment is not IN_PROGRESS.",
            )
        if (action or "CONTINUE") == "ROLLBACK":
            roll_back(
                rec["service"],
                rec,
                f"Lifecycle hook {hook_id} asked for a rollback (ContinueServiceDeployment).",
            )
        else:
            detail["status"] = "SUCCEEDED"
            rec["updatedAt"] = _now()
    return arn


def stop_deployment(arn: str, stop_type: str | None) -> str:
    from moto.ecs.exceptions import ECSException

    with engine.LOCK:
        rec = _found(arn)
        if rec["status"] in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS", "STOP_REQUESTED"):
            return arn  # as ECS: the rollback or stop carries on
        if rec["status"] not in ONGOING:
            raise ECSException(
                "ConflictException", f"The service deployment {arn} is {rec['status']} and cannot be stopped."
            )
        if not rec["native"]:
            raise ECSException(
                "UnsupportedFeatureException",
                "The local ECS stand-in stops BLUE_GREEN, LINEAR and CANARY service deployments only.",
            )
        roll_back(
            rec["service"],
            rec,
            f"Service deployment stopped by StopServiceDeployment ({stop_type or 'ROLLBACK'}).",
        )
    return arn


def install() -> None:
    """Wire the four actions into moto's ECS responses (it dispatches by action name),
    DescribeServices' currentServiceRevisions, and the service deployments into the
    scheduler."""
    scheduler.HOOKS.update(
        drive=service_deployments.drive, target_groups=service_deployments.production_target_groups
    )
    from moto.ecs.models import Service
    from moto.ecs.responses import ActionResult, EC2ContainerServiceResponse

    def list_service_deployments(self: Any) -> Any:
        found = list_deployments(
            self.ecs_backend,
            self._get_param("cluster"),
            self._get_param("service"),
            self._get_param("status"),
        )
        return ActionResult({"serviceDeployments": found})

    def describe_service_deployments(self: Any) -> Any:
        answers, failures = [], []
        for arn in self._get_param("serviceDeploymentArns") or []:
            rec = RECORDS.get(arn)
            if rec is None:
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                answers.append(describe(rec))
        return ActionResult({"serviceDeployments": answers, "failures": failures})

    def continue_service_deployment(self: Any) -> Any:
        arn = continue_deployment(
            self._get_param("serviceDeploymentArn"), self._get_param("hookId"), self._get_param("action")
        )
        return ActionResult({"serviceDeploymentArn": arn})

    def stop_service_deployment(self: Any) -> Any:
        arn = stop_deployment(self._get_param("serviceDeploymentArn"), self._get_param("stopType"))
        return ActionResult({"serviceDeploymentArn": arn})

    def current_revisions(self: Any) -> list[dict[str, Any]]:
        return [
            {
                "arn": revision_arn(self, d),
                "requestedTaskCount": d.get("desiredCount", 0),
                "runningTaskCount": d.get("runningCount", 0),
                "pendingTaskCount": d.get("pendingCount", 0),
            }
            for d in self.deployments or []
        ]

    EC2ContainerServiceResponse.list_service_deployments = list_service_deployments  # type: ignore[attr-defined]
    EC2ContainerServiceResponse.describe_service_deployments = describe_service_deployments  # type: ignore[attr-defined]
    EC2ContainerServiceResponse.continue_service_deployment = continue_service_deployment  # type: ignore[attr-defined]
    EC2ContainerServiceResponse.stop_service_deployment = stop_service_deployment  # type: ignore[attr-defined]
    Service.current_service_revisions = property(current_revisions)  # type: ignore[attr-defined]
