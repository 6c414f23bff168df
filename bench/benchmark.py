"""Every speed target of issue 13, measured side by side with the peers, in one run.

    python bench/benchmark.py                 # everything (~20 min); writes docs/benchmarks.md + .png
    python bench/benchmark.py --only fleet    # one section (deploy, detection, fleet, startup, images, deps)

Needs the `test` and `bench` extras (`pip install -e '.[test,bench]'`), `jq`, and for the
image section the local stack (`invoke stack.up`; its ports from STACK_* as usual).
fabfuel's `ecs deploy` runs from a throwaway venv (bench/deploy_peers.py installs it).

The AWS sections start their OWN emulator on a free loopback port — moto plus
pipeline/stack/emulator/'s scheduler stand-in, plus PHASES below — and reach it through
bench/deploy_peers.py's counting proxy, so every tool's calls are counted and timed.

PHASES. The local stack's rollout stand-in jumps from "new tasks PENDING" to COMPLETED.
ECS does not: a rollout behind a load balancer shows its new tasks PENDING, then RUNNING
while the old ones drain for the target group's deregistration delay, then COMPLETED.
Here a rollout of D seconds is PENDING for the first 40 % of D, then RUNNING with the old
deployment draining for the remaining 60 %, and every arranged service sits behind a
target group whose deregistration delay is that 60 %. D = 0 is an instant rollout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import deploy_peers as peers  # noqa: E402 (needs bench/ on the path)

PROVISION = 0.4  # share of a rollout its new tasks are PENDING (the rest: old ones draining)
REPORT = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.png"


# --- the emulator with rollout phases ------------------------------------------------------


def install_phases(delay: float) -> None:
    """New tasks RUNNING after PROVISION·delay while the old deployment drains (see PHASES)."""
    from datetime import timedelta

    from moto.core.utils import utcnow
    from moto.ecs.models import EC2ContainerServiceBackend

    inner = EC2ContainerServiceBackend.describe_services

    def describe_services(self: Any, cluster_str: str, names: list[str]) -> Any:
        services, failures = inner(self, cluster_str, names)
        now = time.monotonic()
        for service in services:
            done_at = getattr(service, "_standin_rollout_done_at", None)
            primary = service.deployments[0] if service.deployments else None
            running_at = done_at - delay + PROVISION * delay if done_at is not None else None
            if running_at is None or primary is None or now < running_at:
                continue
            if primary.get("runningCount", 0) < primary["desiredCount"]:
                # ECS stamps the deployment's updatedAt when its counts change: then, not when
                # this (lazy) model notices it at the next DescribeServices.
                stamp = utcnow() - timedelta(seconds=now - running_at)
                primary.update(runningCount=primary["desiredCount"], pendingCount=0, updatedAt=stamp)
                service.events.insert(
                    0,
                    {
                        "id": str(uuid.uuid4()),
                        "createdAt": primary["updatedAt"],
                        "message": f"(service {service.name}) has begun draining connections on 1 tasks.",
                    },
                )
        return services, failures

    EC2ContainerServiceBackend.describe_services = describe_services  # type: ignore[method-assign,assignment]


def run_emulator(port: int, delay: float) -> None:
    from moto.server import main as moto_main

    from pipeline.stack.emulator.bench_rollout import install_rollout_model, install_task_model

    install_rollout_model(delay)
    install_phases(delay)
    install_task_model()
    moto_main(["-H", "127.0.0.1", "-p", str(port)])


@contextmanager
def emulator(delay: float, logs: Path) -> Iterator[str]:
    """This script's emulator (the rollout phases) on a free loopback port."""
    with peers.emulator_process(
        lambda port: [sys.executable, __file__, "emulator", "--port", str(port), "--delay", str(delay)],
        {},
        logs,
    ) as endpoint:
        yield endpoint


@contextmanager
def bench_stack(delay: float) -> Iterator[tuple[str, peers.CountingProxy, Path]]:
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp, emulator(delay, Path(tmp)) as endpoint:
        proxy = peers.CountingProxy(endpoint)
        try:
            yield endpoint, proxy, Path(tmp)
        finally:
            proxy.close()


def arrange(endpoint: str, delay: float, cluster: str | None = None) -> peers.Target:
    """deploy_peers.arrange, behind a target group draining for the rollout's last 60 %."""
    prefix = f"b{uuid.uuid4().hex[:10]}"
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    boto = lambda name: peers.boto(endpoint, name)  # noqa: E731
    boto("ecr").create_repository(repositoryName=prefix)
    peers.put_image_record(boto, prefix, sha)
    ecs, elbv2, ec2 = boto("ecs"), boto("elbv2"), boto("ec2")
    cluster = cluster or f"{prefix}-cluster"
    ecs.create_cluster(clusterName=cluster)
    service = f"{prefix}-service"
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = elbv2.create_target_group(Name=prefix, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    drain = str(int(round((1 - PROVISION) * delay)))
    elbv2.modify_target_group_attributes(
        TargetGroupArn=group, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": drain}]
    )
    initial = ecs.register_task_definition(
        family=service,
        containerDefinitions=[
            {
                "name": service,
                "image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{prefix}:initial",
                "memory": 128,
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=cluster,
        serviceName=service,
        taskDefinition=initial,
        desiredCount=1,
        loadBalancers=[{"targetGroupArn": group, "containerName": service, "containerPort": 8080}],
    )
    return peers.Target(prefix, sha, cluster, service, initial)


def env_for(tool: str, endpoint: str, target: peers.Target, scratch: Path) -> dict[str, str]:
    environ = peers.tool_env(endpoint, target, scratch)
    if tool != "seed":  # the seed's header needs it; the others find the account themselves
        environ.pop("AWS_ACCOUNT_ID", None)
    return environ


def run(
    tool: str, argv: list[str], environ: dict[str, str], proxy: peers.CountingProxy, delay: float
) -> peers.Run:
    mark = proxy.mark()
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=900)
    ended = time.perf_counter()
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    if proc.returncode:
        print(f"    {tool} exit {proc.returncode}: " + " | ".join(lines[-3:]))
    return peers.Run(
        tool, ended - started, proc.returncode, proxy.since(mark), lines[-3:], delay, started, ended
    )


def one_deploy(
    tool: str, endpoint: str, proxy: peers.CountingProxy, scratch: Path, delay: float
) -> peers.Run:
    target = arrange(endpoint, delay)
    peers.settle(endpoint, [target], timeout=delay + 60)
    environ = env_for(tool, proxy.endpoint, target, scratch)
    argv = peers.command(tool, target, environ, ECS)
    result = run(tool, argv, environ, proxy, delay)
    if result.exit_code:  # a failed deploy's time is no measure of a deploy: stop, don't report it
        raise SystemExit(f"error: {tool}'s deploy exited {result.exit_code}: {' | '.join(result.said)}")
    return result


ECS = ""  # fabfuel's `ecs`, set in main


# --- sections ------------------------------------------------------------------------------


def section_deploy(runs: int, tools: list[str]) -> dict[str, Any]:
    """One deploy on an instant rollout: wall and AWS calls, the tools interleaved."""
    results: dict[str, list[peers.Run]] = {t: [] for t in tools}
    with bench_stack(0.0) as (endpoint, proxy, scratch):
        for i in range(runs + 1):  # the first round warms caches up and is not counted
            for tool in tools:
                result = one_deploy(tool, endpoint, proxy, scratch, 0.0)
                if i:
                    results[tool].append(result)
                print(f"  deploy {tool} run {i}: {result.wall:.2f}s, {len(result.calls)} calls")
    return {
        tool: {
            "wall": [r.wall for r in rs],
            "calls": [len(r.calls) for r in rs],
            # our deploy lock (one SSM parameter) is a guarantee the peers do not give; kept apart
            "lock_calls": [sum(c.action.startswith("ssm:") for c in r.calls) for r in rs],
            "which": dict(sorted(rs[0].counts.items())),
            "exit": [r.exit_code for r in rs],
        }
        for tool, rs in results.items()
    }


def section_detection(delays: list[tuple[float, int]], tools: list[str]) -> dict[str, Any]:
    """How long after a rollout completes each tool returns, and what its polling costs."""
    out: dict[str, Any] = {}
    for delay, runs in delays:
        rows: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
        with bench_stack(delay) as (endpoint, proxy, scratch):
            for i in range(runs):
                for tool in tools:
                    r = one_deploy(tool, endpoint, proxy, scratch, delay)
                    update = next((c for c in r.calls if c.action == "ecs:UpdateService"), None)
                    describes = [c for c in r.calls if c.action == "ecs:DescribeServices"]
                    during = [c for c in describes if update and c.start >= update.end]
                    span = (r.ended - update.end) if update else r.wall
                    rows[tool].append(
                        {
                            "wall": r.wall,
                            "exit": r.exit_code,
                            "latency": r.latency,
                            "calls": len(r.calls),
                            "describes": len(describes),
                            "describes_per_min": 60 * len(during) / span if span else 0,
                            "which": dict(sorted(r.counts.items())),
                        }
                    )
                    print(
                        f"  detection D={delay:g} {tool} run {i + 1}: latency {r.latency:.2f}s, {len(describes)} polls"
                    )
        out[f"{delay:g}"] = rows
    return out


def release_file(targets: list[peers.Target], path: Path) -> Path:
    lines = []
    for t in targets:
        lines += ["[[service]]", f'prefix = "{t.prefix}"', f'sha = "{t.sha}"', f'cluster = "{t.cluster}"', ""]
    path.write_text("\n".join(lines))
    return path


def section_fleet(delay: float, runs: int, size: int, tools: list[str]) -> dict[str, Any]:
    """`invoke release` of 1 and of `size` services (one cluster); the peers one by one."""
    out: dict[str, Any] = {"ours": {"1": [], str(size): []}}
    with bench_stack(delay) as (endpoint, proxy, scratch):
        for i in range(runs):
            for n in (1, size):
                cluster = f"fleet-{uuid.uuid4().hex[:8]}"
                targets = [arrange(endpoint, delay, cluster) for _ in range(n)]
                peers.settle(endpoint, targets, timeout=delay + 60)
                environ = env_for("ours", proxy.endpoint, targets[0], scratch)
                file = release_file(targets, scratch / f"release-{n}-{i}.toml")
                invoke = shutil.which("invoke", path=environ["PATH"])
                argv = [invoke or "invoke", "release", "--env", "prod", "--file", str(file), "--no-smoke"]
                r = run("ours", argv, environ, proxy, delay)
                out["ours"][str(n)].append(
                    {
                        "wall": r.wall,
                        "exit": r.exit_code,
                        "describes": r.counts["ecs:DescribeServices"],
                        "calls": len(r.calls),
                    }
                )
                print(
                    f"  fleet ours n={n} run {i + 1}: {r.wall:.2f}s, {r.counts['ecs:DescribeServices']} DescribeServices"
                )
        for tool in [t for t in tools if t != "ours"]:
            cluster = f"fleet-{uuid.uuid4().hex[:8]}"
            targets = [arrange(endpoint, delay, cluster) for _ in range(size)]
            peers.settle(endpoint, targets, timeout=delay + 60)
            started, describes, codes = time.perf_counter(), 0, []
            for target in targets:  # neither peer has a multi-service mode
                environ = env_for(tool, proxy.endpoint, target, scratch)
                r = run(tool, peers.command(tool, target, environ, ECS), environ, proxy, delay)
                describes += r.counts["ecs:DescribeServices"]
                codes.append(r.exit_code)
            wall = time.perf_counter() - started
            out[tool] = {str(size): [{"wall": wall, "describes": describes, "exit": max(codes)}]}
            print(f"  fleet {tool} n={size} sequential: {wall:.1f}s, {describes} DescribeServices")
    return out


def section_startup(runs: int) -> dict[str, Any]:
    """`invoke --list` here against a bare Invoke project (one trivial task), in turn."""
    with tempfile.TemporaryDirectory(prefix="bare-invoke-") as bare:
        Path(bare, "tasks.py").write_text(
            "from invoke import task\n\n\n@task\ndef hello(c):\n    print('hi')\n"
        )
        invoke = [sys.executable, "-m", "invoke"]
        # `invoke --help deploy`: Invoke 3 takes `invoke deploy --help` as deploy's
        # positional env (= "--help") and runs the deploy.
        commands = {
            "ours": ([*invoke, "--list"], ROOT),
            "bare": ([*invoke, "--list"], Path(bare)),
            "help_ours": ([*invoke, "--help", "deploy"], ROOT),
        }
        if ECS:
            commands["help_fabfuel"] = ([ECS, "deploy", "--help"], ROOT)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(runs + 1):  # interleaved; the first round warms caches up and is not counted
            for name, (argv, cwd) in commands.items():
                start = time.perf_counter()
                subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
                if i:
                    times[name].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(times["ours"], times["bare"], strict=True)]
    loads = Path("/proc/loadavg").read_text().split()[:3]
    return {**times, "ratio": ratios, "load": loads}


def schedule_table() -> list[dict[str, Any]]:
    """Our poll schedule (pipeline/pace.py), computed for PHASES-shaped rollouts of 30 s–10 min."""
    from datetime import UTC, datetime, timedelta

    from pipeline import pace
    from tests.ecs_standin import deployment

    base = datetime(2026, 1, 1, tzinfo=UTC)

    def phases(d: float) -> list[tuple[float, dict[str, Any]]]:
        balancer = [{"targetGroupArn": "tg"}]
        old = deployment("old", "td:1", status="ACTIVE")
        pending = deployment("new", "td:2", running=0, pending=1, state="IN_PROGRESS")
        running = {
            **deployment("new", "td:2", state="IN_PROGRESS"),
            "updatedAt": base + timedelta(seconds=PROVISION * d),
        }
        return [
            (0.0, {"deployments": [pending, old], "loadBalancers": balancer}),
            (PROVISION * d, {"deployments": [running, old], "loadBalancers": balancer}),
            (d, {"deployments": [deployment("new", "td:2")]}),
        ]

    rows = []
    for d in (30, 60, 120, 300, 600):
        latencies, rates, counts = [], [], []
        for offset in [i / 10 for i in range(10)]:  # where the rollout ends against the poll grid
            length = d + offset
            schedule = pace.Pace(drain_lookup=lambda _s, length=length: (1 - PROVISION) * length)
            times, now, shown = [], 0.0, phases(length)
            while True:
                times.append(now)
                answer = [s for start, s in shown if start <= now][-1]
                if now >= length:
                    break
                now += schedule.next(answer, "new", now, base + timedelta(seconds=now))
            latencies.append(times[-1] - length)
            rates.append(60 * len(times) / times[-1])
            counts.append(len(times))
        rows.append(
            {
                "rollout": d,
                "latency_median": statistics.median(latencies),
                "latency_max": max(latencies),
                "polls_per_min": statistics.median(rates),
                "polls": statistics.median(counts),
            }
        )
    return rows


def machine(load_before: str) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    versions = {}
    for name, argv in {
        "ecs-deploy": [ECS, "--version"] if ECS else None,
        "aws": ["aws", "--version"],
        "jq": ["jq", "--version"],
    }.items():
        if argv:
            proc = subprocess.run(argv, capture_output=True, text=True)
            versions[name] = (
                (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr) else "?"
            )
    from importlib.metadata import version

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "moto": version("moto"),
        "botocore": version("botocore"),
        **versions,
        "load_before": load_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "emulator"])
    parser.add_argument("--only", default="deploy,detection,fleet,startup,images,deps")
    parser.add_argument("--tools", default="ours,fabfuel,seed")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=str(ROOT / "docs" / "benchmarks.json"))
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite docs/benchmarks.md and .png from --json (and bench/notes.md) without measuring",
    )
    args = parser.parse_args()
    if args.report_only:
        from report import write

        write(json.loads(Path(args.json).read_text()), REPORT, CHART)
        return
    if args.mode == "emulator":
        run_emulator(args.port, args.delay)
        return
    global ECS
    tools = [t for t in args.tools.split(",") if t]
    ECS = peers.peer_ecs() if "fabfuel" in tools else ""
    if "seed" in tools:
        peers.require_seed_tools()
    only = set(args.only.split(","))
    load_before = Path("/proc/loadavg").read_text().strip()
    results: dict[str, Any] = {"machine": machine(load_before)}
    path = Path(args.json)
    if path.exists():  # a section run alone keeps the others' figures
        results = {**json.loads(path.read_text()), "machine": results["machine"]}
    if "deploy" in only:
        results["deploy"] = section_deploy(10, tools)
    if "detection" in only:
        results["detection"] = section_detection([(10.0, 3), (30.0, 1)], tools)
        results["schedule"] = schedule_table()
    if "fleet" in only:
        results["fleet"] = section_fleet(5.0, 3, 20, tools)
    if "startup" in only:
        results["startup"] = section_startup(10)
    if "images" in only:
        from images import section_images

        results["images"] = section_images(3)
    if "deps" in only:
        from deps_build import section_deps

        results["deps"] = section_deps(1)
    results["machine"]["load_after"] = Path("/proc/loadavg").read_text().strip()
    # Which run each section's figures come from (a section run alone keeps the others').
    when = results.get("measured", {})
    for section in only & {"deploy", "detection", "fleet", "startup", "images", "deps"}:
        when[section] = f"{results['machine']['date']}, load before {load_before.split()[0]}"
    results["measured"] = when
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    from report import write

    write(results, REPORT, CHART)
    print(f"wrote {REPORT}, {CHART} and {path}")


if __name__ == "__main__":
    main()
