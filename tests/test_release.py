"""`invoke release`: several services as one release on the real local stack.

The local ECS runs every service's tasks as real containers (hello_world's image, pulled
from the local registry with ECR's credentials), so each rollout, rollback and
interrupted release below is ECS's scheduler at work, and the aws CLI is the independent
check of what runs afterwards. What real containers cannot be made to do on demand — a
circuit-breaker rollback, a rollout that never ends, throttling — comes from `FleetECS`,
a stand-in at the one boto3 seam that passes every call to the emulator and rewrites
only the scripted services' DescribeServices answers (tests/ecs_standin.py's shapes),
counting every DescribeServices call and the services it named.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline import ecs, pace, release, release_plan, taskdef
from pipeline.errors import ConfigError, DeployFailed, RollbackFailed
from pipeline.stack.emulator.engine import SPEED_TAG
from tests import ecs_standin as standin
from tests.conftest import default_network, local_tags, push_broken, push_image, set_circuit_breaker
from tests.helpers import ROLLOUT_DEADLINE, ROOT, wait_until
from tests.processes import Running, start

# The tag each service's first revision runs; the release moves it to the fleet's sha.
INITIAL = "initial"
# hello_world's health endpoint on its container port (the local ECS points it at the
# task's own port under host networking).
HEALTH = "import http.client as h; c = h.HTTPConnection('127.0.0.1:8080', timeout=4); c.request('GET', '/hello/health'); raise SystemExit(not 200 <= c.getresponse().status < 400)"
# One worker runs the fleets one after another: each runs up to ten containers whose health
# check starts a Python every 0.5 s, and several fleets at once starve the 2 cores until
# healthy tasks fail their checks.
pytestmark = pytest.mark.xdist_group("release_fleet")


def rich_definition(family: str, image: str, prefix: str, region: str) -> dict[str, Any]:
    """A Fargate definition with most of the fields a real service's has, every one of them
    valid on ECS and runnable on the local ECS: the release must keep them all."""
    return {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "taskRoleArn": "arn:aws:iam::123456789012:role/app",
        # Fargate has no host volumes with a sourcePath: a task-scoped bind mount.
        "volumes": [{"name": "scratch"}],
        # The image's own architecture: an ARM64 task would not run an x86-64 image.
        "runtimePlatform": {
            "cpuArchitecture": "ARM64" if platform.machine() in ("arm64", "aarch64") else "X86_64",
            "operatingSystemFamily": "LINUX",
        },
        "ephemeralStorage": {"sizeInGiB": 30},
        "tags": [{"key": "team", "value": "orders"}],
        "containerDefinitions": [
            {
                "name": family,
                "image": image,
                "memory": 128,
                "cpu": 64,
                "essential": True,
                "command": ["python3", "-m", "hello_world.app"],  # hello_world/Dockerfile's CMD
                "user": "10001:10001",
                "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
                "environment": [
                    {"name": "GREETING", "value": "hi"},
                    {"name": "BASE_PATH", "value": "/hello/"},
                ],
                "secrets": [
                    {
                        "name": "DB_PASSWORD",
                        "valueFrom": f"arn:aws:ssm:{region}:123456789012:parameter/{prefix}/db",
                    }
                ],
                "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch"}],
                # ECS's shortest interval; the start period keeps a slow start under load from
                # counting as a failure, and ECS's default timeout a slow answer (timeouts are
                # never sped up).
                "healthCheck": {
                    "command": ["CMD", "python3", "-I", "-S", "-c", HEALTH],
                    "interval": 5,
                    "timeout": 5,
                    "retries": 3,
                    "startPeriod": 30,
                },
                "stopTimeout": 10,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": f"/ecs/{prefix}",
                        "awslogs-region": region,
                        "awslogs-stream-prefix": "release",
                    },
                },
            }
        ],
    }


@dataclass(frozen=True)
class Fleet:
    cluster: str
    prefixes: list[str]
    sha: str
    file: Path

    def services(self) -> list[str]:
        return [f"{p}-service" for p in self.prefixes]


@pytest.fixture
def pulled_images(stack_environ: dict[str, str], prefix: str) -> Iterator[None]:
    """Afterwards (once conftest's `environ` has removed the services and their tasks): the
    tags the local ECS pulled for this test's repositories, `<prefix>-s<i>`."""
    yield
    client = docker.from_env()
    for tag in local_tags(f"{stack_environ['ECR_ENDPOINT']}/{prefix}-s"):  # its other names are not ours
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, noprune=True)


@pytest.fixture
def make_fleet(
    pulled_images: None,
    aws: Callable[[str], Any],
    environ: dict[str, str],
    hello_image: str,
    prefix: str,
    tmp_path: Path,
) -> Callable[..., Fleet]:
    """n Fargate services in one cluster, each with its own ECR repository holding
    hello_world's image under INITIAL and under the fleet's sha, each running revision 1
    (a rich definition, INITIAL) after a COMPLETED first rollout on real containers."""

    def make(n: int, extra: dict[int, dict[str, str]] | None = None) -> Fleet:
        ecs, ecr = aws("ecs"), aws("ecr")
        region = environ["AWS_DEFAULT_REGION"]
        cluster, sha = f"{prefix}-cluster", uuid.uuid4().hex[:12]
        ecs.create_cluster(clusterName=cluster)
        # What the tasks need to start, as on ECS: the secret's parameter, the log group.
        aws("ssm").put_parameter(Name=f"/{prefix}/db", Value="s3cret", Type="SecureString")
        aws("logs").create_log_group(logGroupName=f"/ecs/{prefix}")
        network = default_network(aws)
        prefixes = [f"{prefix}-s{i}" for i in range(n)]
        for p in prefixes:
            ecr.create_repository(repositoryName=p)

        def push(p: str) -> str:
            """INITIAL (revision 1's image), then the sha the release moves to, one after the
            other: pushed at once, a repository's two tags of one manifest once left one of
            them out of ECR's records (repositories are pushed in parallel)."""
            image = push_image(environ, hello_image, p, INITIAL)
            push_image(environ, hello_image, p, sha)
            return image

        with ThreadPoolExecutor(8) as pool:  # each push mounts hello_image's layers: quick
            images = dict(zip(prefixes, pool.map(push, prefixes), strict=True))
        for p in prefixes:
            definition = ecs.register_task_definition(
                **rich_definition(f"{p}-service", images[p], prefix, region)
            )["taskDefinition"]
            ecs.create_service(
                cluster=cluster,
                serviceName=f"{p}-service",
                taskDefinition=definition["taskDefinitionArn"],
                desiredCount=1,
                launchType="FARGATE",
                networkConfiguration=network,
            )

        def settled() -> bool:
            found = []
            for i in range(0, n, 10):
                names = [f"{p}-service" for p in prefixes[i : i + 10]]
                found += ecs.describe_services(cluster=cluster, services=names)["services"]
            return all([d.get("rolloutState") for d in s["deployments"]] == ["COMPLETED"] for s in found)

        wait_until(settled, timeout=ROLLOUT_DEADLINE)
        lines = []
        for i, p in enumerate(prefixes):
            lines += ["[[service]]", f'prefix = "{p}"', f'sha = "{sha}"', f'cluster = "{cluster}"']
            lines += [f'{k} = "{v}"' for k, v in (extra or {}).get(i, {}).items()]
        file = tmp_path / "release.toml"
        file.write_text("\n".join(lines) + "\n")
        return Fleet(cluster, prefixes, sha, file)

    return make


@dataclass
class FleetECS:
    """STAND-IN at the seam: the emulator's ECS, with scripted rollouts for some services
    (`scripts[service]`: states after its 1st, 2nd... UpdateService; the last repeats),
    throttling on demand, and a record of every DescribeServices call's service names."""

    real: Any
    scripts: dict[str, list[list[standin.State]]] = field(default_factory=dict)
    throttle_describes: int = 0  # throttle this many DescribeServices after the first update
    throttle_updates: int = 0
    describes: list[list[str]] = field(default_factory=list)
    updates: list[tuple[str, str]] = field(default_factory=list)
    _rollouts: dict[str, list[standin.Rollout]] = field(default_factory=dict)
    _steps: dict[str, int] = field(default_factory=dict)
    _synced: set[tuple[str, int]] = field(default_factory=set)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def update_service(self, **kwargs: Any) -> dict[str, Any]:
        if self.throttle_updates:
            self.throttle_updates -= 1
            raise standin.throttling()
        name = kwargs["service"]
        before = self.real.describe_services(cluster=kwargs["cluster"], services=[name])["services"][0]
        answer = self.real.update_service(**kwargs)
        self.updates.append((name, kwargs["taskDefinition"].rsplit("/", 1)[-1]))
        if name in self.scripts:
            primary = answer["service"]["deployments"][0]
            old = self._rollouts.get(name, [])
            previous = old[-1] if old else None
            self._rollouts.setdefault(name, []).append(
                standin.Rollout(
                    old_td=previous.new_td if previous else before["taskDefinition"],
                    old_id=previous.new_id if previous else before["deployments"][0]["id"],
                    new_td=primary["taskDefinition"],
                    new_id=primary["id"],
                )
            )
            self._steps[name] = 0
        return dict(answer)

    def describe_services(self, **kwargs: Any) -> dict[str, Any]:
        self.describes.append(list(kwargs["services"]))
        if self.updates and self.throttle_describes:
            self.throttle_describes -= 1
            raise standin.throttling()
        answer = self.real.describe_services(**kwargs)
        for service in answer.get("services", []):
            name = service["serviceName"]
            rollouts = self._rollouts.get(name)
            if not rollouts:
                continue
            script = self.scripts[name][len(rollouts) - 1]
            step = self._steps[name]
            self._steps[name] = step + 1
            shown = script[min(step, len(script) - 1)](rollouts[-1])
            assert isinstance(shown, dict)
            primary = next(d for d in shown["deployments"] if d["status"] == "PRIMARY")
            if primary["taskDefinition"] == rollouts[-1].old_td and (name, len(rollouts)) not in self._synced:
                # ECS's circuit breaker rolled back: the emulator is made to agree, as ECS would.
                self._synced.add((name, len(rollouts)))
                self.real.update_service(
                    cluster=kwargs["cluster"], service=name, taskDefinition=primary["taskDefinition"]
                )
            service["deployments"] = shown["deployments"]
            service["events"] = shown.get("events", [])
            service["taskDefinition"] = primary["taskDefinition"]
        return dict(answer)


@pytest.fixture
def fleet_ctx(aws: Callable[[str], Any], make_context: Callable[..., Any]) -> Callable[..., Any]:
    def make(fake: FleetECS | None = None) -> Any:
        if fake is None:
            return make_context()
        return make_context(aws_factory=lambda name: fake if name == "ecs" else aws(name))

    return make


def options(file: Path, **kwargs: Any) -> release.ReleaseOptions:
    # The rollout deadline that holds on a loaded 2-core machine: a 60-s one let a healthy
    # service of five time out under CI's load and turned the failure under test into another.
    return release.ReleaseOptions("prod", file, **{"timeout": ROLLOUT_DEADLINE, "smoke": False, **kwargs})


def running(aws_cli: Callable[..., Any], fleet_: Fleet) -> dict[str, str]:
    found = []
    for i in range(0, len(fleet_.prefixes), 10):
        found += aws_cli(
            "ecs",
            "describe-services",
            "--cluster",
            fleet_.cluster,
            "--services",
            *fleet_.services()[i : i + 10],
        )["services"]
    return {s["serviceName"]: s["taskDefinition"].rsplit("/", 1)[-1] for s in found}


# --- on the local stack ------------------------------------------------------------------


def test_release_of_five_services_updates_all_and_keeps_every_field(
    make_fleet: Callable[..., Fleet],
    run_task: Callable[..., Any],
    aws_cli: Callable[..., Any],
    hello_url: str,
    environ: dict[str, str],
) -> None:
    fleet_ = make_fleet(5, extra={0: {"url": hello_url}})
    proc = run_task("release", "--env", "prod", "--file", str(fleet_.file), "--parallel", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert running(aws_cli, fleet_) == {s: f"{s}:2" for s in fleet_.services()}
    table = proc.stdout[proc.stdout.index("service  ") :].splitlines()
    assert table[0].split() == ["service", "revision", "status", "duration"]
    for name in fleet_.services():
        assert any(line.split()[:5] == [name, f"{name}:1", "→", f"{name}:2", "released"] for line in table)
    assert f"{fleet_.services()[0]}: GET {hello_url}: HTTP 200" in proc.stdout

    # Without a template, the live definition is kept field for field; only the image moves.
    for index, p in enumerate(fleet_.prefixes):
        old, new = (
            aws_cli(
                "ecs",
                "describe-task-definition",
                "--task-definition",
                f"{p}-service:{n}",
                "--include",
                "TAGS",
            )
            for n in (1, 2)
        )
        drop = {"taskDefinitionArn", "revision", "registeredAt", "registeredBy", "containerDefinitions"}
        assert {k: v for k, v in new["taskDefinition"].items() if k not in drop} == {
            k: v for k, v in old["taskDefinition"].items() if k not in drop
        }
        (before,), (after,) = (
            old["taskDefinition"]["containerDefinitions"],
            new["taskDefinition"]["containerDefinitions"],
        )
        assert after["image"] == f"{environ['ECR_ENDPOINT']}/{p}:{fleet_.sha}"
        assert {**after, "image": before["image"]} == before
        tags = {t["key"]: t["value"] for t in new["tags"]}
        assert tags["team"] == "orders" and tags["pipeline:git-sha"] == fleet_.sha
        # Only the smoke-tested service (the first, with a URL) is verified: a rollback target.
        # The others rolled out untested and are tagged so, never verified.
        outcome = "pipeline:verified-at" if index == 0 else "pipeline:rolled-out-at"
        assert {k for k in tags if k in ("pipeline:verified-at", "pipeline:rolled-out-at")} == {outcome}


def test_one_failure_rolls_back_every_service_the_release_changed(
    make_fleet: Callable[..., Fleet],
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    fleet_ctx: Callable[..., Any],
    environ: dict[str, str],
) -> None:
    from tests.standins import honeycomb_markers

    fleet_ = make_fleet(5)
    broken = fleet_.services()[2]
    fake = FleetECS(aws("ecs"), scripts={broken: [[standin.draining, standin.failed, standin.rolled_back]]})
    ctx = fleet_ctx(fake)
    with honeycomb_markers(None, None).running() as api:
        ctx.environ = {**environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url}
        with pytest.raises(DeployFailed) as info:
            release.release(ctx, options(fleet_.file))
    assert info.value.exit_code == 1
    assert info.value.message.startswith(f"release to prod failed ({broken}: ECS deployment circuit breaker")
    assert info.value.message.endswith("all 5 changed services were rolled back to their previous revisions")
    # Every service runs revision 1 again; the one ECS rolled back was not updated a second time.
    assert running(aws_cli, fleet_) == {s: f"{s}:1" for s in fleet_.services()}
    rollbacks = [name for name, revision in fake.updates if revision.endswith(":1")]
    assert sorted(rollbacks) == sorted(s for s in fleet_.services() if s != broken)
    log = ctx.out.stream.getvalue()
    assert f"{broken}: ECS's circuit breaker is rolling back to {broken}:1" in log
    rows = {r.service: r for r in info.value.rows}  # type: ignore[attr-defined]
    assert rows[broken].status == f"failed, rolled back by ECS to {broken}:1"
    assert all(rows[s].status == f"rolled back to {s}:1" for s in fleet_.services() if s != broken)
    (marker,) = api.requests  # one marker per release
    assert marker.json()["type"] == "release-failed"
    assert marker.json()["message"].startswith(
        "release of 5 services to prod (failed; changed services rolled back): "
    )


def test_a_service_that_really_crashes_shows_why_and_every_service_goes_back(
    make_fleet: Callable[..., Fleet],
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    fleet_ctx: Callable[..., Any],
    environ: dict[str, str],
    hello_image: str,
) -> None:
    fleet_ = make_fleet(3)
    fine, broken, other = fleet_.services()
    # The broken service's release tag is an image that crashes at start, on real containers
    # (its ENTRYPOINT runs before the definition's command); its circuit breaker trips.
    crash = "echo booting; echo 'fatal: DATABASE_URL is not set' >&2; exit 3"
    push_broken(
        environ,
        f'FROM {hello_image}\nENTRYPOINT ["sh", "-c", "{crash}", "--"]\n',
        fleet_.prefixes[1],
        "crash",
    )
    fleet_.file.write_text(
        fleet_.file.read_text().replace(
            f'prefix = "{fleet_.prefixes[1]}"\nsha = "{fleet_.sha}"',
            f'prefix = "{fleet_.prefixes[1]}"\nsha = "crash"',
        )
    )
    set_circuit_breaker(aws, fleet_.cluster, broken, on=True)
    ctx = fleet_ctx()
    with pytest.raises(DeployFailed) as info:
        release.release(ctx, options(fleet_.file))
    assert info.value.message.startswith(f"release to prod failed ({broken}: ")
    log = ctx.out.stream.getvalue()
    assert f"{broken}: stopped: task " in log and f"{broken}:   | fatal: DATABASE_URL is not set" in log
    assert f"{broken}:   | booting" in log and "exit 3" in log
    assert f"{fine}: stopped:" not in log and f"{other}: stopped:" not in log
    assert running(aws_cli, fleet_) == {s: f"{s}:1" for s in fleet_.services()}


def slow_rollouts(aws: Callable[[str], Any], fleet_: Fleet) -> None:
    """The fleet's cluster at ECS's own speed: each rollout takes seconds (the first health
    check 5 s after a task starts), long enough to signal a release while it waits."""
    arn = aws("ecs").describe_clusters(clusters=[fleet_.cluster])["clusters"][0]["clusterArn"]
    aws("ecs").tag_resource(resourceArn=arn, tags=[{"key": SPEED_TAG, "value": "1"}])


def release_process(environ: dict[str, str], fleet_: Fleet, api_url: str) -> Running:
    env = {**environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api_url}
    return start(env, "release", "--env", "prod", "--file", str(fleet_.file), "--no-smoke")


@pytest.mark.heavy
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_the_wait_rolls_all_three_services_back_with_table_and_marker(
    make_fleet: Callable[..., Fleet],
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    environ: dict[str, str],
    signum: int,
    code: int,
) -> None:
    """CircleCI's cancel (SIGTERM) and Ctrl-C (SIGINT), real signals to a real `invoke release`."""
    from tests.standins import honeycomb_markers

    fleet_ = make_fleet(3)
    slow_rollouts(aws, fleet_)
    name = signal.Signals(signum).name
    with honeycomb_markers(None, None).running() as api:
        run = release_process(environ, fleet_, api.url)
        wait_until(lambda: "==> wait for 3 rollouts" in run.text() or run.proc.poll() is not None, 120)
        assert run.proc.poll() is None, run.text()
        run.proc.send_signal(signum)
        assert run.finish(timeout=300) == code, run.text()
        (marker,) = api.wait_for(lambda found: len(found) >= 1)
    text = run.text()
    assert f"warning: interrupted by {name}: rolling back every service this release changed" in text
    table = text[text.index("service  ") :].splitlines()
    for s in fleet_.services():
        assert any(line.split()[:5] == [s, f"{s}:1", "→", f"{s}:2", "failed,"] for line in table), table
        assert any(line.startswith(s) and f"rolled back to {s}:1" in line for line in table), table
    assert (
        f"error: release to prod interrupted by {name}: all 3 changed services were rolled back to "
        "their previous revisions" in text
    )
    assert marker.json()["type"] == "release-failed"
    assert "(interrupted; changed services rolled back)" in marker.json()["message"]
    # The aws CLI, an independent client: every service back on revision 1, steady.
    assert running(aws_cli, fleet_) == {s: f"{s}:1" for s in fleet_.services()}


@pytest.mark.heavy
def test_a_second_sigterm_stops_the_rollback_and_says_what_each_service_runs(
    make_fleet: Callable[..., Fleet], aws: Callable[[str], Any], environ: dict[str, str]
) -> None:
    from tests.standins import honeycomb_markers

    fleet_ = make_fleet(3)
    slow_rollouts(aws, fleet_)
    with honeycomb_markers(None, None).running() as api:
        run = release_process(environ, fleet_, api.url)
        wait_until(lambda: "==> wait for 3 rollouts" in run.text() or run.proc.poll() is not None, 120)
        run.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "==> roll back 3 services" in run.text() or run.proc.poll() is not None, 120)
        assert run.proc.poll() is None, run.text()
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish(timeout=120) == 143, run.text()
    text = run.text()
    assert (
        "error: release to prod interrupted again by SIGTERM while rolling back: stopped rolling back; "
        in text
    )
    said = text[text.index("the services now run: ") :].splitlines()[0]
    for s in fleet_.services():
        assert f"{s} {s}:" in said  # each service's revision, read after the second signal
    table = text[text.index("service  ") :].splitlines()
    assert sum("rollback stopped" in line for line in table) == 3, table


def test_describe_services_is_one_call_per_cluster_per_round_for_up_to_ten(
    make_fleet: Callable[..., Fleet], aws: Callable[[str], Any], fleet_ctx: Callable[..., Any]
) -> None:
    fleet_ = make_fleet(12)
    fake = FleetECS(aws("ecs"))
    # Twelve real rollouts at once: a deadline that holds on a loaded machine (rounds, not time, are counted).
    rows = release.release(fleet_ctx(fake), options(fleet_.file))
    assert isinstance(rows, list) and {r.status for r in rows} == {"released"}
    check, waiting = fake.describes[:2], fake.describes[2:]
    assert [len(c) for c in check] == [10, 2]  # the plan's look at every service: 2 calls
    rounds: list[list[list[str]]] = []
    for call in waiting:  # a round ends where a service is asked about again
        if not rounds or set(call) & {name for earlier in rounds[-1] for name in earlier}:
            rounds.append([])
        rounds[-1].append(call)
    assert sorted(name for call in rounds[0] for name in call) == sorted(fleet_.services())
    for calls in rounds:  # one call per 10 services still rolling, never one per service
        asked = sum(len(call) for call in calls)
        assert len(calls) == -(-asked // 10) and all(len(call) <= 10 for call in calls), rounds


def test_throttling_at_the_seam_is_absorbed(
    make_fleet: Callable[..., Fleet],
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    fleet_ctx: Callable[..., Any],
) -> None:
    fleet_ = make_fleet(5)
    fake = FleetECS(aws("ecs"), throttle_describes=2, throttle_updates=1)
    ctx = fleet_ctx(fake)
    rows = release.release(ctx, options(fleet_.file))
    assert isinstance(rows, list) and {r.status for r in rows} == {"released"}
    assert "DescribeServices throttled; polling again" in ctx.out.stream.getvalue()
    assert running(aws_cli, fleet_) == {s: f"{s}:2" for s in fleet_.services()}


@dataclass
class AnotherDeploy:
    """The real ECS at the seam, where another pipeline deploys `service` (a revision of its
    own, through its own client) right after this release's UpdateService of it."""

    real: Any
    other: Any  # the other pipeline's own client
    service: str
    revision: str  # what the other pipeline deploys
    updates: list[tuple[str, str]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def update_service(self, **kwargs: Any) -> dict[str, Any]:
        answer = self.real.update_service(**kwargs)
        self.updates.append((kwargs["service"], kwargs["taskDefinition"].rsplit("/", 1)[-1]))
        if kwargs["service"] == self.service and len([u for u in self.updates if u[0] == self.service]) == 1:
            self.other.update_service(
                cluster=kwargs["cluster"], service=self.service, taskDefinition=self.revision
            )
        return dict(answer)


def test_a_service_another_deploy_replaced_is_never_rolled_back_over_and_the_rest_are(
    make_fleet: Callable[..., Fleet],
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
    fleet_ctx: Callable[..., Any],
) -> None:
    from pipeline.errors import ServiceLeftChanged

    fleet_ = make_fleet(2)
    kept, taken = fleet_.services()
    live = aws("ecs").describe_task_definition(taskDefinition=f"{taken}:1")["taskDefinition"]
    theirs = aws("ecs").register_task_definition(**taskdef.comparable(live))["taskDefinition"]
    assert theirs["taskDefinitionArn"].endswith(f"{taken}:2")  # before the release registers its own :3
    seam = AnotherDeploy(aws("ecs"), aws("ecs"), taken, theirs["taskDefinitionArn"])
    with pytest.raises(ServiceLeftChanged) as info:
        release.release(fleet_ctx(seam), options(fleet_.file))
    assert info.value.exit_code == 6
    message = info.value.message
    assert f"{taken} was replaced by a deploy this release did not start" in message
    assert message.endswith("the other 1 changed services were rolled back to their previous revisions")
    # The other pipeline's revision runs on; the release's other service is back where it was.
    assert running(aws_cli, fleet_) == {kept: f"{kept}:1", taken: f"{taken}:2"}
    # The release updated both and rolled back only its own: never the other over their deploy.
    assert sorted(seam.updates[:2]) == sorted([(kept, f"{kept}:2"), (taken, f"{taken}:3")])
    assert seam.updates[2:] == [(kept, f"{kept}:1")]
    rows = {r.service: r.status for r in info.value.rows}  # type: ignore[attr-defined]
    assert rows == {kept: f"rolled back to {kept}:1", taken: "replaced by another deploy; not rolled back"}


def test_a_rollback_that_fails_too_is_exit_code_4(
    make_fleet: Callable[..., Fleet], aws: Callable[[str], Any], fleet_ctx: Callable[..., Any]
) -> None:
    fleet_ = make_fleet(2)
    fine, stuck = fleet_.services()
    # The other service's rollout and rollback complete at once, however loaded the machine;
    # the stuck one's never do.
    fake = FleetECS(
        aws("ecs"),
        scripts={
            fine: [[standin.completed], [standin.completed]],
            stuck: [[standin.draining], [standin.draining]],
        },
    )
    with pytest.raises(RollbackFailed) as info:
        release.release(fleet_ctx(fake), options(fleet_.file, timeout=6.0))
    assert info.value.exit_code == 4
    assert info.value.message.endswith(f"the rollback of {stuck} failed too")
    assert "timed out after 6s" in info.value.message


def test_every_problem_is_reported_before_any_change(
    make_fleet: Callable[..., Fleet],
    run_task: Callable[..., Any],
    aws_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    fleet_ = make_fleet(2)
    template = tmp_path / "taskdef.json"
    template.write_text(json.dumps({"containerDefinitions": [{"name": "${container}", "image": "${imag}"}]}))
    text = fleet_.file.read_text()
    text += (
        f'[[service]]\nprefix = "{fleet_.prefixes[0]}x"\nsha = "{fleet_.sha}"\n'  # no repository, no service
    )
    text += f'[[service]]\nprefix = "{fleet_.prefixes[1]}"\nsha = "0000000"\ncluster = "{fleet_.cluster}"\n'
    text = text.replace(
        f'prefix = "{fleet_.prefixes[0]}"\n',
        f'prefix = "{fleet_.prefixes[0]}"\ntemplate = "taskdef.json"\n',
        1,
    )
    fleet_.file.write_text(text)
    proc = run_task("release", "--env", "prod", "--file", str(fleet_.file), "--no-smoke")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "unknown placeholder ${imag}" in line
    assert (
        f"ECR repository '{fleet_.prefixes[0]}x' does not exist" in line
        or f"no image {fleet_.prefixes[0]}x:" in line
    )
    assert f"ECS service '{fleet_.prefixes[0]}x-service' not found" in line
    assert "listed twice" in line and f"no image {fleet_.prefixes[1]}:0000000 in ECR" in line
    for p in fleet_.prefixes:
        arns = aws_cli("ecs", "list-task-definitions", "--family-prefix", f"{p}-service")[
            "taskDefinitionArns"
        ]
        assert [a.rsplit(":", 1)[1] for a in arns] == ["1"]


def test_a_service_whose_rollback_targets_image_expired_stops_the_release_before_any_change(
    make_fleet: Callable[..., Fleet],
    run_task: Callable[..., Any],
    aws: Callable[[str], Any],
    aws_cli: Callable[..., Any],
) -> None:
    fleet_ = make_fleet(2)
    expired = fleet_.prefixes[1]
    # The lifecycle policy expired the tag revision 1 runs (its tasks keep running: pulled).
    aws("ecr").batch_delete_image(repositoryName=expired, imageIds=[{"imageTag": INITIAL}])
    proc = run_task("release", "--env", "prod", "--file", str(fleet_.file), "--no-smoke")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert f"its rollback target {expired}-service:1 runs " in line
    assert (
        f"/{expired}:{INITIAL}, which is no longer in ECR, so a failed release could not roll it back" in line
    )
    assert fleet_.prefixes[0] not in line  # the other service's way back is fine
    for p in fleet_.prefixes:
        arns = aws_cli("ecs", "list-task-definitions", "--family-prefix", f"{p}-service")[
            "taskDefinitionArns"
        ]
        assert [a.rsplit(":", 1)[1] for a in arns] == ["1"]
        service = aws_cli(
            "ecs", "describe-services", "--cluster", fleet_.cluster, "--services", f"{p}-service"
        )
        assert service["services"][0]["taskDefinition"].endswith(f"{p}-service:1")


def test_dry_run_prints_the_plan_and_changes_nothing(
    make_fleet: Callable[..., Fleet], run_task: Callable[..., Any], aws_cli: Callable[..., Any]
) -> None:
    fleet_ = make_fleet(2)
    proc = run_task(
        "release", "--env", "prod", "--file", str(fleet_.file), "--dry-run", "--json", "--no-smoke"
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [
        (s["service"], s["current"].rsplit("/", 1)[-1], s["previous"].rsplit("/", 1)[-1])
        for s in plan["services"]
    ] == [(s, f"{s}:1", f"{s}:1") for s in fleet_.services()]
    assert all(
        s["request"]["containerDefinitions"][0]["image"].endswith(f":{fleet_.sha}") for s in plan["services"]
    )
    assert "dry run: nothing was registered or updated" in proc.stderr
    assert running(aws_cli, fleet_) == {s: f"{s}:1" for s in fleet_.services()}


# --- migrations -------------------------------------------------------------------------


def migration_tasks(aws_cli: Callable[..., Any], fleet_: Fleet) -> dict[str, tuple[str, int]]:
    """family → (revision, exit code) of each migration task in the fleet's cluster (aws CLI)."""
    arns = aws_cli(
        "ecs",
        "list-tasks",
        "--cluster",
        fleet_.cluster,
        "--started-by",
        "ecs-pipeline/migrate",
        "--desired-status",
        "STOPPED",
    )["taskArns"]
    if not arns:
        return {}
    tasks = aws_cli("ecs", "describe-tasks", "--cluster", fleet_.cluster, "--tasks", *arns)["tasks"]
    found = {}
    for task in tasks:
        revision = task["taskDefinitionArn"].rsplit("/", 1)[-1]
        found[revision.split(":")[0]] = (revision, task["containers"][0]["exitCode"])
    return found


def test_a_failing_migration_stops_the_release_before_any_update(
    make_fleet: Callable[..., Fleet],
    aws_cli: Callable[..., Any],
    fleet_ctx: Callable[..., Any],
    environ: dict[str, str],
) -> None:
    from tests.standins import honeycomb_markers

    fleet_ = make_fleet(
        3,
        extra={
            0: {"migrate_command": "sh -c 'echo migrated s0'"},
            1: {"migrate_command": "sh -c 'echo migrating s1; exit 3'"},
        },
    )
    first, broken, third = fleet_.services()
    ctx = fleet_ctx()
    with honeycomb_markers(None, None).running() as api:
        ctx.environ = {**environ, "HONEYCOMB_API_KEY": "k", "HONEYCOMB_API_HOST": api.url}
        with pytest.raises(DeployFailed) as info:
            release.release(ctx, options(fleet_.file))
    (marker,) = api.requests
    assert marker.json()["type"] == "release-failed"
    assert marker.json()["message"].startswith(
        f"release of 3 services to prod (stopped by {broken}'s migration; nothing updated): "
        f"{first} {first}:1 → {first}:2, "
    )
    message = info.value.message
    assert message.startswith(f"release to prod stopped before any update: {broken}: migration failed:")
    assert "exit code 3" in message
    assert message.endswith(f"no service was updated; the migrations of {first} had run")
    # Each migration ran its service's new revision, in the file's order, and the third
    # service (no migration) ran none; every service still runs revision 1, untouched.
    assert migration_tasks(aws_cli, fleet_) == {first: (f"{first}:2", 0), broken: (f"{broken}:2", 3)}
    assert running(aws_cli, fleet_) == {s: f"{s}:1" for s in fleet_.services()}
    for service in aws_cli(
        "ecs", "describe-services", "--cluster", fleet_.cluster, "--services", *fleet_.services()
    )["services"]:
        assert [d["rolloutState"] for d in service["deployments"]] == ["COMPLETED"]
    log = ctx.out.stream.getvalue()
    assert log.index("| migrated s0") < log.index("| migrating s1")
    assert "==> update " not in log
    rows = {r.service: r.status for r in info.value.rows}  # type: ignore[attr-defined]
    assert rows == {first: "migrated", broken: "migration failed", third: "not started"}


def test_migrations_run_before_the_updates_and_the_release_file_can_turn_one_off(
    make_fleet: Callable[..., Fleet],
    aws_cli: Callable[..., Any],
    make_context: Callable[..., Any],
    tmp_path: Path,
) -> None:
    fleet_ = make_fleet(2, extra={1: {"migrate_command": ""}})
    # The project's migrate_command applies to every service the file does not set it for.
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "hello_world", project / "hello_world", ignore=shutil.ignore_patterns("__pycache__")
    )
    (project / "pyproject.toml").write_text(
        (ROOT / "pyproject.toml")
        .read_text()
        .replace("[tool.pipeline]\n", "[tool.pipeline]\nmigrate_command = \"sh -c 'echo schema ok'\"\n", 1)
    )
    ctx = make_context(root=project)
    rows = release.release(ctx, options(fleet_.file))
    assert isinstance(rows, list) and {r.status for r in rows} == {"released"}
    first, second = fleet_.services()
    assert migration_tasks(aws_cli, fleet_) == {first: (f"{first}:2", 0)}
    assert running(aws_cli, fleet_) == {s: f"{s}:2" for s in fleet_.services()}
    log = ctx.out.stream.getvalue()
    assert log.index(f"==> migrate with {first}:2") < log.index("| schema ok") < log.index("==> update ")


@pytest.mark.heavy
def test_sigterm_during_a_migration_updates_nothing_and_says_the_task_keeps_running(
    make_fleet: Callable[..., Fleet], aws_cli: Callable[..., Any], environ: dict[str, str]
) -> None:
    fleet_ = make_fleet(2, extra={0: {"migrate_command": "sh -c 'echo migrating; sleep 60'"}})
    first = fleet_.services()[0]
    run = start(environ, "release", "--env", "prod", "--file", str(fleet_.file), "--no-smoke")
    # The migration's task runs: its first log line came back.
    wait_until(lambda: "| migrating" in run.text() or run.proc.poll() is not None, 120)
    assert run.proc.poll() is None, run.text()
    run.proc.send_signal(signal.SIGTERM)  # CircleCI's cancel, while the migration runs
    assert run.finish(timeout=120) == 143, run.text()
    text = run.text()
    assert f"error: release to prod stopped before any update: {first}: interrupted by SIGTERM: task " in text
    assert "keeps running (stop it: aws ecs stop-task" in text
    assert "==> update " not in text
    assert running(aws_cli, fleet_) == {s: f"{s}:1" for s in fleet_.services()}


def test_the_dry_run_shows_each_services_migration(
    make_fleet: Callable[..., Fleet], run_task: Callable[..., Any], aws_cli: Callable[..., Any]
) -> None:
    fleet_ = make_fleet(2, extra={0: {"migrate_command": "python3 -m migrate --to head"}})
    proc = run_task("release", "--env", "prod", "--file", str(fleet_.file), "--dry-run", "--no-smoke")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"  {fleet_.services()[0]} in "))
    assert lines[at + 1] == (
        "    first runs migrate_command as a one-off task of the new revision before UpdateService: "
        "python3 -m migrate --to head"
    )
    assert not any("migrate_command" in line for line in lines[at + 2 :])
    json_plan = run_task(
        "release", "--env", "prod", "--file", str(fleet_.file), "--dry-run", "--json", "--no-smoke"
    )
    assert [s["migrate_command"] for s in json.loads(json_plan.stdout)["services"]] == [
        "python3 -m migrate --to head",
        "",
    ]
    assert migration_tasks(aws_cli, fleet_) == {}


# --- pure parts ----------------------------------------------------------------------------


def test_batches_are_per_cluster_and_at_most_ten() -> None:
    pairs = [("a", f"s{i}") for i in range(12)] + [("b", "x"), ("a", "s0")]
    assert [(c, len(n)) for c, n in ecs.batches(pairs)] == [("a", 10), ("a", 2), ("b", 1)]


def test_the_release_file_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        '[[service]]\nprefix = "a"\ncolour = "red"\nmigrate_command = "sh -c \'x"\n'
        '[[service]]\nsha = 3\nvalues = "v.json"\n'
    )
    with pytest.raises(ConfigError) as info:
        release_plan.read_file(path)
    keys = (
        "project, prefix, sha, cluster, service, family, container, template, values, url, "
        "smoke_text, base_path, smoke_path, migrate_command"
    )
    assert info.value.problems == [
        f"{path}: service 1: unknown key 'colour'; use {keys}",
        f"{path}: service 1: sha must be a non-empty string",
        f'{path}: service 1: migrate_command: "sh -c \'x" does not split into words (No closing quotation)',
        f"{path}: service 2: sha must be a non-empty string",
        f"{path}: service 2: sha must be a string",
        f"{path}: service 2: values needs a template",
    ]


def test_a_service_names_its_repository_and_its_own_smoke_settings(tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "pyproject.toml").write_text('[tool.pipeline]\nprefix = "audit"\n')
    path = tmp_path / "releases" / "r.toml"
    path.parent.mkdir()
    path.write_text(
        '[[service]]\nproject = "../audit"\nsha = "e8fb3c9"\nsmoke_text = "audited"\n'
        'base_path = "/audit/"\nsmoke_path = "/audit/health"\n'
        '[[service]]\nproject = "../nowhere"\nsha = "abc1234"\nbase_path = "audit/"\nsmoke_path = "health"\n'
        '[[service]]\nprefix = "x"\nsha = "abc1234"\nbase_path = "/x"\n'
    )
    with pytest.raises(ConfigError) as info:
        release_plan.read_file(path)
    assert info.value.problems == [
        f"{path}: service 2: base_path 'audit/' must be a path starting with '/'",
        f"{path}: service 2: smoke_path 'health' must be a path starting with '/'",
        f"{path}: service 2: project '../nowhere': no pyproject.toml in {path.parent / '../nowhere'}",
        f"{path}: service 3: base_path '/x' must end with '/' (e.g. /audit/)",
    ]
    path.write_text(path.read_text().split('[[service]]\nproject = "../nowhere')[0])
    (entry,) = release_plan.read_file(path)
    assert entry == release_plan.Entry(
        "e8fb3c9",
        project=path.parent / "../audit",
        smoke_text="audited",
        base_path="/audit/",
        smoke_path="/audit/health",
    )
    assert release_plan.first_service(path) == (None, path.parent / "../audit")


def test_the_settings_of_a_service_are_its_repositorys_with_the_entrys_overrides(
    tmp_path: Path, fleet_ctx: Callable[..., Any]
) -> None:
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "pyproject.toml").write_text(
        '[tool.pipeline]\nprefix = "audit"\nbase_path = "/a/"\n[tool.pipeline.smoke]\ntext = "audit ok"\n'
    )
    ctx = fleet_ctx()  # runs under this test's AWS_RESOURCE_NAME_PREFIX: never the service's
    entry = release_plan.Entry("abc1234", project=audit)
    settings, environment = release_plan._settings_for(ctx, entry, "prod")
    assert (settings.prefix, settings.base_path, settings.smoke.text) == ("audit", "/a/", "audit ok")
    assert environment.service == "audit-service"
    entry = release_plan.Entry("abc1234", project=audit, prefix="audit-pr", smoke_text="hi", base_path="/b/")
    settings, environment = release_plan._settings_for(ctx, entry, "prod")
    assert (settings.prefix, settings.base_path, settings.smoke.text) == ("audit-pr", "/b/", "hi")
    assert environment.service == "audit-pr-service"


def test_a_short_sha_resolves_to_the_one_image_it_names_or_is_refused_naming_them(
    aws: Callable[[str], Any], fleet_ctx: Callable[..., Any], prefix: str
) -> None:
    from tests.helpers import put_image_record

    aws("ecr").create_repository(repositoryName=prefix)
    full, other, twin = "e8fb3c9" + "1" * 33, "abcdef0" + "2" * 33, "abcdef0" + "3" * 33
    for tag in (full, other, twin):
        put_image_record(aws, prefix, tag)
    ctx = fleet_ctx()
    record, tag = release_plan.resolve_image(ctx.settings, ctx, "e8fb3c9")
    assert tag == full and record is not None and full in record.tags
    assert release_plan.resolve_image(ctx.settings, ctx, full)[1] == full
    assert release_plan.resolve_image(ctx.settings, ctx, "0000000") == (None, "0000000")
    with pytest.raises(ConfigError, match=r"^sha abcdef0 matches 2 images: abcdef0(2|3)+ \(pushed .*abcdef0"):
        release_plan.resolve_image(ctx.settings, ctx, "abcdef0")


def test_the_table_says_old_and_new_revision_status_and_duration() -> None:
    rows = [
        release.Row("orders", "orders:3", "orders:4", "released", 12.34),
        release.Row("web", "web:9", "", "not registered", 0, "AccessDenied"),
    ]
    assert release.table(rows) == [
        "service  revision             status          duration",
        "-------  -------------------  --------------  --------",
        "orders   orders:3 → orders:4  released        12.3s",
        "web      web:9 → -            not registered  0.0s",
        "web: AccessDenied",
    ]


def _service(running: int, pending: int, stale: int = 0, grace: int = 0) -> dict[str, Any]:
    deployments = [standin.deployment("new", "td:2", running=running, pending=pending, state="IN_PROGRESS")]
    if stale:
        deployments.append(standin.deployment("old", "td:1", status="ACTIVE", running=stale))
    return {"deployments": deployments, "healthCheckGracePeriodSeconds": grace}


@pytest.mark.parametrize(
    ("answers", "drain", "waits"),
    [
        # tasks not RUNNING: ramp up, then every 5 s
        ([_service(0, 1)] * 5, 0, [0.5, 1.0, 2.0, 5.0, 5.0]),
        # RUNNING with old tasks draining for 30 s: sleep towards the drain's end, then every 0.5 s
        ([_service(0, 1), _service(1, 0, stale=1)] + [_service(1, 0, stale=1)] * 8, 30, None),
        # RUNNING, no load balancer: completion may come any moment
        ([_service(1, 0)] * 4, 0, [0.5, 0.5, 0.5, 0.5]),
    ],
    ids=["pending", "draining", "running"],
)
def test_the_poll_schedule_follows_what_the_service_says(
    answers: list[Any], drain: float, waits: list[float] | None
) -> None:
    schedule, now, got = pace.Pace(drain=drain), 0.0, []
    for answer in answers:
        got.append(schedule.next(answer, "new", now))
        now += got[-1]
    if waits is not None:
        assert got == waits
        return
    # First seen RUNNING at 0.5 s (the poll before: 0.0): completion is possible from 30 s on.
    assert max(got) == 5.0 and got[-1] == pace.FAST
    first_fast = next(i for i, w in enumerate(got) if i > 1 and w == pace.FAST)
    assert 29.0 <= sum(got[:first_fast]) <= 30.0


def test_the_deployments_time_stamp_narrows_when_its_tasks_started_running() -> None:
    from datetime import UTC, datetime, timedelta

    base = datetime(2026, 1, 1, tzinfo=UTC)
    running = _service(1, 0, stale=1)
    running["deployments"][0]["updatedAt"] = base + timedelta(seconds=7)  # RUNNING since 7 s
    schedule = pace.Pace(drain=30)
    schedule.next(_service(0, 1), "new", 3.5, base + timedelta(seconds=3.5))  # still PENDING
    schedule.next(running, "new", 8.5, base + timedelta(seconds=8.5))
    # Not from 3.5 s (the poll before) but from 7 s less the clock allowance: 36 s.
    assert schedule.possible_at == 7 - pace.SKEW + 30
