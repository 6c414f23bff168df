"""invoke run-task: the request and the reading of a task (tables), the command's words
through invoke's argv, bad input before anything runs, and a task's life (logs
streamed, exit code, never started, Ctrl-C) with ECS's task answers scripted at the
seam and CloudWatch Logs the emulator's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline import runtask
from pipeline.errors import StepFailed
from tests.conftest import DeployTarget
from tests.logged import log_to_cloudwatch
from tests.tasks_standin import ScriptedTasks, Step, factory, task


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["invoke", "run-task", "--env", "prod", "--", "sh", "-c", "echo X; exit 7"],
            ("sh", "-c", "echo X; exit 7"),
        ),
        (["invoke", "run-task", "--env", "prod", "--", "ls", "--", "-x"], ("ls", "--", "-x")),
        (["invoke", "run-task", "--env", "prod"], ()),
        (["invoke", "run-task", "--env", "prod", "--"], ()),
    ],
)
def test_command_words_are_the_raw_words_after_the_first_double_dash(
    argv: list[str], words: tuple[str, ...]
) -> None:
    assert runtask.command_words(argv) == words


SERVICE = {
    "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
    "launchType": "FARGATE",
    "platformVersion": "1.4.0",
    "networkConfiguration": {
        "awsvpcConfiguration": {
            "subnets": ["subnet-1"],
            "securityGroups": ["sg-1"],
            "assignPublicIp": "ENABLED",
        }
    },
}


def test_run_request_takes_cluster_launch_and_network_from_the_service() -> None:
    request = runtask.run_request(SERVICE, "fam:3", "app", ["sh", "-c", "echo X; exit 7"])
    assert request == {
        "cluster": SERVICE["clusterArn"],
        "taskDefinition": "fam:3",
        "count": 1,
        "startedBy": "ecs-pipeline/run-task",
        "launchType": "FARGATE",
        "platformVersion": "1.4.0",
        "networkConfiguration": SERVICE["networkConfiguration"],
        "overrides": {"containerOverrides": [{"name": "app", "command": ["sh", "-c", "echo X; exit 7"]}]},
    }


def test_run_request_prefers_the_capacity_provider_strategy_and_omits_what_the_service_lacks() -> None:
    strategy = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    service = {
        "clusterArn": "c",
        "capacityProviderStrategy": strategy,
        "launchType": "",
        "platformVersion": "LATEST",
    }
    request = runtask.run_request(service, "fam:1", "app", ["true"], started_by="x")
    assert request["capacityProviderStrategy"] == strategy
    assert not {"launchType", "platformVersion", "networkConfiguration"} & set(request)


@pytest.mark.parametrize(
    ("definition", "preferred", "chosen"),
    [
        ({"containerDefinitions": [{"name": "app"}, {"name": "sidecar"}]}, "app", "app"),
        ({"containerDefinitions": [{"name": "log", "essential": False}, {"name": "web"}]}, "app", "web"),
        ({"containerDefinitions": [{"name": "app", "essential": False}, {"name": "web"}]}, "app", "web"),
    ],
)
def test_the_essential_container_is_the_services_when_essential(
    definition: dict[str, Any], preferred: str, chosen: str
) -> None:
    assert runtask.essential_container(definition, preferred) == chosen


@pytest.mark.parametrize(
    ("answer", "stopped", "never_started", "exit_code"),
    [
        (task("RUNNING", "app"), False, False, 1),
        (
            task("STOPPED", "app", 7, "EssentialContainerExited", "Essential container in task exited"),
            True,
            False,
            7,
        ),
        (
            task("STOPPED", "app", 0, "EssentialContainerExited", "Essential container in task exited"),
            True,
            False,
            0,
        ),
        (
            task("STOPPED", "app", None, "TaskFailedToStart", "CannotPullContainerError: not found"),
            True,
            True,
            1,
        ),
        (task("STOPPED", "app", None, "UserInitiated", "Stopped by a person"), True, True, 1),
    ],
)
def test_task_state_reads_the_essential_containers_exit(
    answer: dict[str, Any], stopped: bool, never_started: bool, exit_code: int
) -> None:
    state = runtask.task_state(answer, "app")
    assert (state.stopped, state.never_started) == (stopped, never_started)
    assert runtask.Finished(state, "arn:aws:ecs:r:1:task/c/abc").exit_code == exit_code


# --- through invoke, on the emulator -------------------------------------------------


def test_no_wait_prints_the_arn_and_the_command_arrives_as_the_shell_passed_it(
    run_task: Callable[..., Any], deploy_target: DeployTarget, aws_cli: Callable[..., Any]
) -> None:
    proc = run_task("run-task", "--env", "prod", "--no-wait", "--", "sh", "-c", "echo X; exit 7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    arn = proc.stdout.strip()
    assert arn.startswith("arn:aws:ecs:") and ":task/" in arn
    described = aws_cli("ecs", "describe-tasks", "--cluster", deploy_target.cluster, "--tasks", arn)["tasks"][
        0
    ]
    assert described["overrides"]["containerOverrides"] == [
        {"name": deploy_target.service, "command": ["sh", "-c", "echo X; exit 7"]}
    ]
    assert described["taskDefinitionArn"].endswith(f"{deploy_target.family}:1")
    assert described["startedBy"] == "ecs-pipeline/run-task"
    # The service is untouched.
    service = aws_cli(
        "ecs", "describe-services", "--cluster", deploy_target.cluster, "--services", deploy_target.service
    )
    assert service["services"][0]["taskDefinition"].endswith(f"{deploy_target.family}:1")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--env", "prod"), "no command; give one after --"),
        (("--env", "prod", "--"), "no command; give one after --"),
        (("--env", "nope", "--", "true"), "--env nope: unknown environment"),
        (("--env", "prod", "--sha", "abc1234def", "--", "true"), "in ECR; push it first"),
    ],
)
def test_bad_input_is_one_line_before_anything_runs(
    run_task: Callable[..., Any],
    deploy_target: DeployTarget,
    aws_cli: Callable[..., Any],
    args: tuple[str, ...],
    expected: str,
) -> None:
    proc = run_task("run-task", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert (
        aws_cli(
            "ecs", "list-tasks", "--cluster", deploy_target.cluster, "--started-by", "ecs-pipeline/run-task"
        )["taskArns"]
        == []
    )
    revisions = aws_cli("ecs", "list-task-definitions", "--family-prefix", deploy_target.family)
    assert len(revisions["taskDefinitionArns"]) == 1


# --- a task's life, scripted at the seam ----------------------------------------------


@pytest.fixture
def scripted(
    aws: Callable[[str], Any], deploy_target: DeployTarget, prefix: str
) -> Callable[[list[Step]], ScriptedTasks]:
    """A service whose definition logs to CloudWatch Logs, and ECS's task answers scripted."""
    ecs, logs = aws("ecs"), aws("logs")
    group = f"/ecs/{prefix}"
    logs.create_log_group(logGroupName=group)
    log_to_cloudwatch(aws, deploy_target.cluster, deploy_target.service, group)

    def make(steps: list[Step]) -> ScriptedTasks:
        return ScriptedTasks(ecs, logs, steps, log_group=group, stream_prefix="prod")

    return make


def _run(
    make_context: Callable[..., Any], aws: Callable[[str], Any], standin: ScriptedTasks, **options: Any
) -> Any:
    ctx = make_context(aws_factory=factory(aws, standin))
    ask = options.pop("ask", lambda _q: False)
    result = runtask.run(
        ctx, runtask.RunOptions("prod", ("sh", "-c", "echo X; exit 7"), **options), ask, lambda _s: None
    )
    return result, ctx.out.stream.getvalue()


def test_log_lines_stream_as_they_arrive_and_the_exit_code_is_the_containers(
    make_context: Callable[..., Any],
    aws: Callable[[str], Any],
    scripted: Callable[..., ScriptedTasks],
    deploy_target: DeployTarget,
) -> None:
    name = deploy_target.service
    standin = scripted(
        [
            Step(task("PENDING", name)),
            Step(task("RUNNING", name), ("X",)),
            Step(task("RUNNING", name), ("second line",)),
            Step(
                task("STOPPED", name, 7, "EssentialContainerExited", "Essential container in task exited"),
                ("last",),
            ),
        ]
    )
    result, output = _run(make_context, aws, standin)
    assert isinstance(result, runtask.Finished) and result.exit_code == 7
    lines = output.splitlines()
    assert lines.index("X") < lines.index("second line") < lines.index("last")
    assert output.count("\nX\n") == 1  # each line once, though the stream is read on every poll
    assert "stopped (Essential container in task exited); exit code 7" in output
    [request] = standin.run_requests
    assert request["overrides"]["containerOverrides"][0]["command"] == ["sh", "-c", "echo X; exit 7"]


def test_a_task_that_never_started_prints_its_stopped_reason_and_fails(
    make_context: Callable[..., Any],
    aws: Callable[[str], Any],
    scripted: Callable[..., ScriptedTasks],
    deploy_target: DeployTarget,
) -> None:
    reason = "CannotPullContainerError: pull image manifest has been retried 1 time(s): not found"
    standin = scripted([Step(task("STOPPED", deploy_target.service, None, "TaskFailedToStart", reason))])
    result, output = _run(make_context, aws, standin)
    assert result.exit_code == 1
    assert f"never started: {reason}" in output


@pytest.mark.parametrize(
    ("flag", "answer", "stops"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_ctrl_c_stops_the_task_when_asked_to_and_says_what_it_did(
    make_context: Callable[..., Any],
    aws: Callable[[str], Any],
    scripted: Callable[..., ScriptedTasks],
    deploy_target: DeployTarget,
    flag: bool,
    answer: bool,
    stops: bool,
) -> None:
    questions: list[str] = []

    def ask(question: str) -> bool:
        questions.append(question)
        return answer

    standin = scripted([Step(task("RUNNING", deploy_target.service)), Step(KeyboardInterrupt())])
    with pytest.raises(runtask.Interrupted) as caught:
        _run(make_context, aws, standin, stop_on_interrupt=flag, ask=ask)
    assert caught.value.exit_code == 130
    assert len(standin.stopped) == int(stops)
    assert questions == ([] if flag else [f"stop task {standin.task_arn.rsplit('/', 1)[-1]}? [y/N] "])
    if stops:
        assert "asked ECS to stop task" in caught.value.message
    else:
        assert "keeps running" in caught.value.message and "aws ecs stop-task" in caught.value.message


def test_with_sha_it_registers_the_revision_tagged_like_a_deploys_and_leaves_the_service(
    make_context: Callable[..., Any],
    aws: Callable[[str], Any],
    scripted: Callable[..., ScriptedTasks],
    deploy_target: DeployTarget,
) -> None:
    standin = scripted(
        [
            Step(
                task(
                    "STOPPED",
                    deploy_target.service,
                    0,
                    "EssentialContainerExited",
                    "Essential container in task exited",
                )
            )
        ]
    )
    ecs = aws("ecs")
    before = ecs.describe_services(cluster=deploy_target.cluster, services=[deploy_target.service])[
        "services"
    ][0]
    result, _output = _run(make_context, aws, standin, sha=deploy_target.sha)
    assert result.exit_code == 0
    [request] = standin.run_requests
    registered = ecs.describe_task_definition(taskDefinition=request["taskDefinition"], include=["TAGS"])
    assert {t["key"]: t["value"] for t in registered["tags"]}["pipeline:git-sha"] == deploy_target.sha
    assert registered["taskDefinition"]["containerDefinitions"][0]["image"].endswith(f":{deploy_target.sha}")
    after = ecs.describe_services(cluster=deploy_target.cluster, services=[deploy_target.service])[
        "services"
    ][0]
    assert after["taskDefinition"] == before["taskDefinition"]


def test_a_task_still_running_at_the_timeout_is_one_line_and_keeps_running(
    make_context: Callable[..., Any],
    aws: Callable[[str], Any],
    scripted: Callable[..., ScriptedTasks],
    deploy_target: DeployTarget,
) -> None:
    standin = scripted([Step(task("RUNNING", deploy_target.service))])
    with pytest.raises(StepFailed) as caught:
        _run(make_context, aws, standin, timeout=0.0)
    assert "still RUNNING after 0s; it keeps running" in caught.value.message
    assert "aws ecs stop-task" in caught.value.message
    assert standin.stopped == []
