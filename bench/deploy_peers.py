"""Our deploy side by side with its peers: wall time, AWS API calls, detection latency.

    python bench/deploy_peers.py [--runs 5] [--delay 0] [--tools ours,fabfuel,seed]
    python bench/deploy_peers.py --delay 3 --runs 3      # detection latency, rollout of 3 s
    python bench/deploy_peers.py rollback                 # what each reports for a rolled-back rollout
    python bench/deploy_peers.py schedule                 # each tool's poll schedule, computed
    python bench/deploy_peers.py serve [--delay 0]        # an emulator + one arranged service per
                                                          # tool, for an outside timer

The tools, each run as a user runs it, as its own process:
  ours     invoke deploy --env prod --sha SHA --no-smoke
  fabfuel  ecs deploy CLUSTER SERVICE --tag SHA   (PyPI ecs-deploy; installed into a
           throwaway venv under /tmp when `ecs` is not on PATH, never into the project)
  seed     bash bench/deploy.sh                   (the seed's deploy.sh loop: aws CLI + jq)

Every run starts this script's OWN emulator process (never the shared stack's on :4566):
pipeline/stack/emulator/'s ECS rollout stand-in with EMULATOR_ROLLOUT_SECONDS=--delay, plus the
task model below, on a free loopback port. The tools reach it through a counting proxy (also
on loopback) that records each AWS call's action and time; the proxy's own cost per call is
measured and printed. Each run deploys its own freshly arranged cluster, service (one
COMPLETED deployment, one RUNNING task) and ECR image record, so runs never share state.

Detection latency: the rollout completes `--delay` seconds after the emulator answered the
tool's UpdateService; latency is from then until the tool's process exited.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import stack  # noqa: E402 (needs ROOT on the path)
from tests.helpers import put_image_record  # noqa: E402

TOOLS = ("ours", "fabfuel", "seed")
PEER_VENV = Path("/tmp/ecs-deploy-venv")
REGION = "us-east-1"


# --- the emulator: the project's rollout stand-in plus the tasks a rollout starts ---------


def run_emulator(port: int) -> None:
    """This script's own emulator process: moto + the project's rollout stand-in + tasks."""
    from moto.server import main as moto_main

    from pipeline.stack.emulator.bench_rollout import install_rollout_model, install_task_model

    install_rollout_model(float(os.environ.get("EMULATOR_ROLLOUT_SECONDS", "0")))
    install_task_model()
    moto_main(["-H", "127.0.0.1", "-p", str(port)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def emulator(delay: float, logs: Path) -> Iterator[str]:
    """Start this script's emulator on a free loopback port; yield its endpoint; stop it."""
    with emulator_process(
        lambda port: [sys.executable, __file__, "emulator", "--port", str(port)],
        {"EMULATOR_ROLLOUT_SECONDS": str(delay)},
        logs,
    ) as endpoint:
        yield endpoint


@contextmanager
def emulator_process(argv: Callable[[int], list[str]], env: dict[str, str], logs: Path) -> Iterator[str]:
    """Run `argv(port)` (an emulator) on a free loopback port until it answers; yield its
    endpoint; stop its whole process group afterwards."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(logs / "emulator.log", "ab") as log:
        proc = subprocess.Popen(
            argv(port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"error: the bench emulator exited; see {logs / 'emulator.log'}")
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"error: the bench emulator did not answer in 60 s; see {logs}"
                    ) from None
                time.sleep(0.1)
        yield endpoint
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --- the counting proxy --------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Call:
    action: str  # service:Operation, e.g. ecs:DescribeServices
    start: float  # time.perf_counter() in this process
    end: float
    status: int


def action_of(method: str, path: str, headers: Any, body: bytes) -> str:
    """service:Operation of one AWS request, whatever its protocol (JSON, query, REST)."""
    scope = CREDENTIAL_SCOPE.search(headers.get("Authorization", ""))
    service = scope.group(1) if scope else "?"
    if target := headers.get("X-Amz-Target"):
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    if "/operation/" in path:  # smithy RPC v2
        return f"{service}:{path.rsplit('/operation/', 1)[-1]}"
    form = parse_qs(body.decode("utf-8", "replace"))
    return f"{service}:{form['Action'][0]}" if "Action" in form else f"{service}:{method} {path}"


class CountingProxy:
    """Forwards every request to the emulator and records what it was and when."""

    def __init__(self, upstream: str) -> None:
        self.upstream_port = int(upstream.rsplit(":", 1)[1])
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Forward,), {"proxy": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def since(self, mark: int) -> list[Call]:
        with self._lock:
            return sorted(self.calls[mark:], key=lambda c: c.start)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3 and the aws CLI expect
    proxy: CountingProxy

    def setup(self) -> None:
        super().setup()
        # Headers and body leave as separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _forward(self) -> None:
        start = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", self.proxy.upstream_port, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response_only(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        action = action_of(self.command, self.path, self.headers, body)
        self.proxy.record(Call(action, start, time.perf_counter(), answer.status))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


# --- arranging a service to deploy ---------------------------------------------------------


def boto(endpoint: str, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass(frozen=True)
class Target:
    """One arranged prod service, as `invoke deploy --env prod` finds it under `prefix`."""

    prefix: str
    sha: str
    cluster: str
    service: str
    initial: str  # the task definition running before the deploy


def arrange(endpoint: str) -> Target:
    """ECR repository + image record, cluster, task definition, service: one COMPLETED rollout."""
    prefix = f"b{uuid.uuid4().hex[:10]}"
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    boto(endpoint, "ecr").create_repository(repositoryName=prefix)
    put_image_record(lambda service: boto(endpoint, service), prefix, sha)
    ecs = boto(endpoint, "ecs")
    cluster, service = f"{prefix}-cluster", f"{prefix}-service"
    ecs.create_cluster(clusterName=cluster)
    initial = ecs.register_task_definition(
        family=service,
        containerDefinitions=[
            {
                "name": service,
                "image": f"{stack.ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/{prefix}:initial",
                "memory": 128,
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=initial, desiredCount=1)
    return Target(prefix, sha, cluster, service, initial)


def settle(endpoint: str, targets: list[Target], timeout: float) -> None:
    """Wait until each target's first rollout COMPLETED (its task then runs)."""
    ecs = boto(endpoint, "ecs")
    deadline = time.monotonic() + timeout
    for target in targets:
        while True:
            found = ecs.describe_services(cluster=target.cluster, services=[target.service])["services"][0]
            if found["deployments"][0].get("rolloutState") == "COMPLETED":
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"error: {target.service}'s first rollout did not complete in {timeout:g}s")
            time.sleep(0.1)


# --- the tools -----------------------------------------------------------------------------


def peer_ecs() -> str:
    """fabfuel's `ecs`: on PATH, else in a throwaway venv (installed once, ~20 s)."""
    found = shutil.which("ecs")
    if found:
        return found
    ecs = PEER_VENV / "bin" / "ecs"
    if not ecs.exists():
        print(f"installing ecs-deploy into {PEER_VENV} (throwaway venv, not a project dependency)")
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "ecs-deploy"], check=True)
    return str(ecs)


def require_seed_tools() -> None:
    for tool, fix in (("jq", "apt-get install -y jq"), ("aws", "pip install awscli (the test extra)")):
        if not shutil.which(tool):
            raise SystemExit(f"error: the seed's deploy.sh needs `{tool}`; install it: {fix}")


def tool_env(endpoint: str, target: Target, scratch: Path) -> dict[str, str]:
    """What `invoke stack.env` sets, at `endpoint`, plus the seed header's variables."""
    keep = ("CIRCLE_", "AWS_", "ECR_", "ECS_", "HONEYCOMB_", "OTEL_")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(keep)}
    port = int(endpoint.rsplit(":", 1)[1])
    environ.update(stack.env(stack.StackConfig(directory=scratch, emulator_port=port)))
    environ["AWS_RESOURCE_NAME_PREFIX"] = target.prefix  # the service's names (stack.env sets none)
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    environ["AWS_CONFIG_FILE"] = str(
        scratch / f"{target.prefix}.aws-config"
    )  # the seed's `aws configure set`
    return environ


def command(tool: str, target: Target, environ: dict[str, str], ecs: str) -> list[str]:
    if tool == "ours":
        invoke = shutil.which("invoke", path=environ["PATH"])
        runner = [invoke] if invoke else [sys.executable, "-m", "invoke"]
        return [*runner, "deploy", "--env", "prod", "--sha", target.sha, "--no-smoke"]
    if tool == "fabfuel":
        return [ecs, "deploy", target.cluster, target.service, "--tag", target.sha]
    environ.update(
        ECR_REPOSITORY_NAME=target.prefix,
        ECS_CLUSTER_NAME=target.cluster,
        ECS_SERVICE_NAME=target.service,
        ECS_TASK_FAMILY_NAME=target.service,
        ECS_CONTAINER_DEFINITION_NAME=target.service,
        CIRCLE_SHA1=target.sha,
    )
    return ["bash", str(ROOT / "bench" / "deploy.sh")]


@dataclass
class Run:
    tool: str
    wall: float
    exit_code: int
    calls: list[Call]
    said: list[str]  # the last lines it printed
    delay: float
    started: float
    ended: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> Counter[str]:
        return Counter(c.action for c in self.calls)

    @property
    def rollout_done(self) -> float | None:
        update = next((c for c in self.calls if c.action == "ecs:UpdateService"), None)
        return update.end + self.delay if update else None

    @property
    def latency(self) -> float | None:
        """From the rollout's completion to the tool's exit."""
        done = self.rollout_done
        return self.ended - done if done is not None else None

    @property
    def poll_gap(self) -> float | None:
        """From the rollout's completion to the first DescribeServices that could see it."""
        done = self.rollout_done
        if done is None:
            return None
        after = [c.start for c in self.calls if c.action == "ecs:DescribeServices" and c.start >= done]
        return after[0] - done if after else None


def run_tool(
    tool: str,
    target: Target,
    proxy: CountingProxy,
    scratch: Path,
    ecs: str,
    delay: float,
    timeout: float = 400,
    during: Callable[[], None] | None = None,
) -> Run:
    environ = tool_env(proxy.endpoint, target, scratch)
    argv = command(tool, target, environ, ecs)
    mark = proxy.mark()
    helper = threading.Thread(target=during, daemon=True) if during else None
    started = time.perf_counter()
    if helper:
        helper.start()
    proc = subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout)
    ended = time.perf_counter()
    if helper:
        helper.join(timeout=30)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    (scratch / f"{tool}-{target.prefix}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return Run(tool, ended - started, proc.returncode, proxy.since(mark), lines[-3:], delay, started, ended)


# --- reports -------------------------------------------------------------------------------


def spread(values: list[float], unit: str = "s") -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}{unit}"
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}–{max(values):.2f})"


def proxy_cost(emulator_endpoint: str, proxy: CountingProxy, n: int = 200) -> float:
    """Seconds the proxy adds to one call: DescribeClusters direct and through it, in turn."""
    direct, proxied = boto(emulator_endpoint, "ecs"), boto(proxy.endpoint, "ecs")
    times: dict[Any, list[float]] = {direct: [], proxied: []}
    for _ in range(n):
        for client, took in times.items():
            start = time.perf_counter()
            client.describe_clusters(clusters=["none"])
            took.append(time.perf_counter() - start)
    proxy.clear()
    return statistics.median(times[proxied]) - statistics.median(times[direct])


def report(runs: list[Run], delay: float, cost: float) -> None:
    print(f"\nrollout delay {delay:g}s; proxy adds {cost * 1000:.2f} ms per call (already in the wall times)")
    print(f"{'tool':<8} {'runs':>4}  {'wall median (min–max)':<24} {'AWS calls':>9}  ", end="")
    print("latency after rollout    poll gap" if delay else "exit codes")
    for tool in TOOLS:
        mine = [r for r in runs if r.tool == tool]
        if not mine:
            continue
        calls = statistics.median(len(r.calls) for r in mine)
        print(f"{tool:<8} {len(mine):>4}  {spread([r.wall for r in mine]):<24} {calls:>9g}  ", end="")
        if delay:
            latencies = [r.latency for r in mine if r.latency is not None]
            gaps = [r.poll_gap for r in mine if r.poll_gap is not None]
            print(f"{spread(latencies):<24} {spread(gaps)}")
        else:
            print(" ".join(str(r.exit_code) for r in mine))
    for tool in TOOLS:
        mine = [r for r in runs if r.tool == tool]
        if mine:
            print(
                f"\n{tool}: calls in one run: "
                + ", ".join(f"{k} ×{v}" for k, v in sorted(mine[0].counts.items()))
            )
            print(f"{tool}: exit {mine[0].exit_code}; said: " + " | ".join(mine[0].said))


def dump(path: str | None, runs: list[Run], meta: dict[str, Any]) -> None:
    if not path:
        return
    rows = [
        {
            "tool": r.tool,
            "wall": r.wall,
            "exit_code": r.exit_code,
            "delay": r.delay,
            "latency": r.latency,
            "poll_gap": r.poll_gap,
            "calls": [{"action": c.action, "at": c.start - r.started, "status": c.status} for c in r.calls],
            "said": r.said,
            **r.extra,
        }
        for r in runs
    ]
    Path(path).write_text(json.dumps({**meta, "runs": rows}, indent=2))


# --- modes ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }


@contextmanager
def bench_stack(delay: float) -> Iterator[tuple[str, CountingProxy, Path]]:
    with tempfile.TemporaryDirectory(prefix="deploy-peers-") as tmp, emulator(delay, Path(tmp)) as endpoint:
        proxy = CountingProxy(endpoint)
        try:
            yield endpoint, proxy, Path(tmp)
        finally:
            proxy.close()


def chosen_tools(args: argparse.Namespace) -> tuple[list[str], str]:
    """--tools, with each one's prerequisites in place; also fabfuel's `ecs` command."""
    tools = [t for t in args.tools.split(",") if t]
    ecs = peer_ecs() if "fabfuel" in tools else ""
    if "seed" in tools:
        require_seed_tools()
    return tools, ecs


def compare(args: argparse.Namespace) -> None:
    tools, ecs = chosen_tools(args)
    with bench_stack(args.delay) as (endpoint, proxy, scratch):
        cost = proxy_cost(endpoint, proxy)
        targets = {(i, tool): arrange(endpoint) for i in range(args.runs) for tool in tools}
        settle(endpoint, list(targets.values()), timeout=args.delay + 60)
        runs = []
        for i in range(args.runs):  # interleaved, so drift in the machine's speed hits each tool alike
            for tool in tools:
                run = run_tool(tool, targets[i, tool], proxy, scratch, ecs, args.delay)
                print(f"  run {i + 1} {tool}: {run.wall:.2f}s, {len(run.calls)} calls, exit {run.exit_code}")
                runs.append(run)
        report(runs, args.delay, cost)
        dump(args.json, runs, {**machine(), "mode": "compare", "proxy_cost": cost})


def rollback(args: argparse.Namespace) -> None:
    """Roll the rollout back under each tool, as the deployment circuit breaker would leave it.

    1 s after the tool's UpdateService, the harness (directly, uncounted) updates the service
    back to the previous revision: the tool's deployment becomes ACTIVE and drains, the old
    revision is PRIMARY again and COMPLETED --delay seconds later, its task RUNNING. That is
    the API's end state after a circuit-breaker rollback; the transient rolloutState FAILED
    on the new deployment is not shown (the emulator has no failure model).
    """
    tools, ecs = chosen_tools(args)
    with bench_stack(args.delay) as (endpoint, proxy, scratch):
        cost = proxy_cost(endpoint, proxy)
        targets = {tool: arrange(endpoint) for tool in tools}
        settle(endpoint, list(targets.values()), timeout=args.delay + 60)
        runs = []
        for tool in tools:
            target, mark = targets[tool], proxy.mark()

            def roll_back(target: Target = target, mark: int = mark) -> None:
                deadline = time.perf_counter() + 60
                while time.perf_counter() < deadline:
                    update = next((c for c in proxy.since(mark) if c.action == "ecs:UpdateService"), None)
                    if update:
                        time.sleep(max(0.0, update.end + 1.0 - time.perf_counter()))
                        boto(endpoint, "ecs").update_service(
                            cluster=target.cluster, service=target.service, taskDefinition=target.initial
                        )
                        return
                    time.sleep(0.01)

            run = run_tool(tool, target, proxy, scratch, ecs, args.delay, during=roll_back)
            running = boto(endpoint, "ecs").describe_services(
                cluster=target.cluster, services=[target.service]
            )
            run.extra["running_after"] = running["services"][0]["taskDefinition"].rsplit("/", 1)[-1]
            print(f"  {tool}: {run.wall:.2f}s, {len(run.calls)} calls, exit {run.exit_code}")
            runs.append(run)
        print(f"\nrolled back 1 s into a {args.delay:g}s rollout; proxy adds {cost * 1000:.2f} ms per call")
        for run in runs:
            verdict = "reports FAILURE" if run.exit_code else "reports SUCCESS"
            print(
                f"{run.tool:<8} exit {run.exit_code} ({verdict}) after {run.wall:.1f}s, {len(run.calls)} calls; "
            )
            print(
                f"         service runs {run.extra['running_after']} afterwards; said: "
                + " | ".join(run.said)
            )
        dump(args.json, runs, {**machine(), "mode": "rollback", "proxy_cost": cost})


def wait_schedule(multiplier: float, low: float, high: float, horizon: float) -> list[float]:
    """When our wait polls DescribeServices (s after UpdateService): tenacity's own waits."""
    from tenacity import RetryCallState, wait_exponential

    wait = wait_exponential(multiplier=multiplier, min=low, max=high)
    times, now, attempt = [0.0], 0.0, 1
    while now < horizon:
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        now += wait(state)
        times.append(now)
        attempt += 1
    return times


def fixed_schedule(first: float, interval: float, horizon: float) -> list[float]:
    times = [first]
    while times[-1] < horizon:
        times.append(times[-1] + interval)
    return times


def detection(times: list[float], rollout: float) -> tuple[float, int]:
    """(seconds from completion to the poll that sees it, polls made until then)."""
    index = next(i for i, t in enumerate(times) if t >= rollout)
    return times[index] - rollout, index + 1


def schedule(args: argparse.Namespace) -> None:
    """Poll schedules, computed: the latency and DescribeServices count each costs."""
    horizon = 700.0
    schedules = {
        "ours (0.5, min 0.2, max 5)": wait_schedule(0.5, 0.2, 5.0, horizon),
        "ours, max 2": wait_schedule(0.5, 0.2, 2.0, horizon),
        "ours, max 10": wait_schedule(0.5, 0.2, 10.0, horizon),
        "ours, max 15": wait_schedule(0.5, 0.2, 15.0, horizon),
        # the peers' cadence as measured (--delay 3 call times): sleep plus a call, or plus an aws CLI start
        "fabfuel (sleep 1)": fixed_schedule(0.0, 1.01, horizon),
        "seed (sleep 5)": fixed_schedule(0.6, 5.45, horizon),
    }
    print("first polls of ours: " + ", ".join(f"{t:g}" for t in schedules["ours (0.5, min 0.2, max 5)"][:9]))
    rollouts = [float(r) for r in args.rollouts.split(",")]
    spread_over = [30 + i * 0.1 for i in range(int((600 - 30) / 0.1))]  # uniform 30 s … 10 min
    print(
        f"\n{'schedule':<28}"
        + "".join(f"{f'D={r:g}s':>14}" for r in rollouts)
        + "   D∈[30,600]: mean latency, polls/min"
    )
    for name, times in schedules.items():
        cells = "".join(f"{'{:.2f}s/{}'.format(*detection(times, r)):>14}" for r in rollouts)
        latencies = [detection(times, r)[0] for r in spread_over]
        per_minute = sum(1 for t in times if 60 <= t < 600) / 9
        print(f"{name:<28}{cells}   {statistics.mean(latencies):.2f}s, {per_minute:.1f}")
    print("\ncells: seconds from the rollout's completion to the poll that sees it / polls until then")


def serve(args: argparse.Namespace) -> None:
    """An emulator and one arranged service per tool, for an outside timer; Enter stops it."""
    tools = [t for t in args.tools.split(",") if t]
    ecs = peer_ecs() if "fabfuel" in tools else ""
    with (
        tempfile.TemporaryDirectory(prefix="deploy-peers-") as tmp,
        emulator(args.delay, Path(tmp)) as endpoint,
    ):
        targets = {tool: arrange(endpoint) for tool in tools}
        settle(endpoint, list(targets.values()), timeout=args.delay + 60)
        print(f"emulator {endpoint} (rollout {args.delay:g}s); each line deploys again on every run:")
        for tool, target in targets.items():
            environ = tool_env(endpoint, target, Path(tmp))
            argv = command(tool, target, environ, ecs)
            changed = {k: v for k, v in environ.items() if os.environ.get(k) != v and k != "PATH"}
            print(
                f"\n{tool}:\n  cd {ROOT} && env "
                + " ".join(f"{k}={v}" for k, v in sorted(changed.items()))
                + " "
                + " ".join(argv)
            )
        print("\npress Enter to stop the emulator", flush=True)
        with suppress(KeyboardInterrupt):
            sys.stdin.readline()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", nargs="?", default="compare", choices=["compare", "rollback", "schedule", "serve", "emulator"]
    )
    parser.add_argument("--runs", type=int, default=5, help="deploys per tool (compare)")
    parser.add_argument(
        "--delay", type=float, default=None, help="emulator rollout seconds (compare 0, rollback 3)"
    )
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated: ours,fabfuel,seed")
    parser.add_argument("--json", help="write every run's figures and calls to this file")
    parser.add_argument("--rollouts", default="2,3,30,60,300", help="rollout seconds to tabulate (schedule)")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "emulator":
        run_emulator(args.port)
        return
    if args.delay is None:
        args.delay = 3.0 if args.mode == "rollback" else 0.0
    {"compare": compare, "rollback": rollback, "schedule": schedule, "serve": serve}[args.mode](args)


if __name__ == "__main__":
    main()
