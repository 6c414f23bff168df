"""Zero downtime per deployment strategy, measured on the local stack's real containers.

For ROLLING, BLUE_GREEN, LINEAR and CANARY (each on its own stack, prefix
`bench-<strategy>`, the demo's quick timings): set up prod, deploy a first revision, then
with `--rate` requests a second on the production URL (pipeline/loadgen.py, each answer
checked and attributed to its revision) deploy a good revision, then one that is healthy
but answers wrongly. Per strategy: requests served, failed, and served by the wrong
revision, and each deploy's wall time. A chart shows the traffic share over time of the
canary's good deploy.

    python bench/strategies.py [--rate 20] [--only CANARY] [--json docs/strategies.json] \\
        [--chart docs/strategies.png]

The local stack must be up (`./dev stack.up`); its timings run EMULATOR_SPEED times
faster than ECS's (a one-minute bake takes 6 s at the default 10).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STRATEGIES = ("ROLLING", "BLUE_GREEN", "LINEAR", "CANARY")


def one(strategy: str, rate: float) -> dict[str, Any]:
    from pipeline import config, deploy, image, infra, stack, verbs
    from pipeline.clients import Clients
    from pipeline.context import Context
    from pipeline.demo import ENVIRONMENT, WRONG_ANSWER, push_wrong_answer, quick_smoke, with_strategy
    from pipeline.errors import DeployFailed
    from pipeline.git import Revision
    from pipeline.loadgen import Load
    from pipeline.output import Output

    os.environ.update(stack.env(stack.config_from(os.environ)))  # boto3 reads its credentials there
    env = dict(os.environ)
    env["AWS_RESOURCE_NAME_PREFIX"] = f"bench-{strategy.lower().replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    settings = config.load(env, ROOT)
    ctx = Context(settings, Clients(region=settings.region), Output(stream=io.StringIO()), env)
    if strategy != "ROLLING":
        ctx.settings = with_strategy(ctx.settings, strategy)
    ctx.settings = quick_smoke(ctx.settings)
    first = Revision(uuid.uuid4().hex + uuid.uuid4().hex[:8])
    good = Revision(uuid.uuid4().hex + uuid.uuid4().hex[:8])
    built = verbs.dockerize(ctx, first)
    repository, _, tag = image.local_name(ctx.settings, good).rpartition(":")
    ctx.clients.docker().images.get(built).tag(repository, tag)  # the same image, a second sha
    infra.setup(ctx)
    verbs.push(ctx, first)
    verbs.push(ctx, good)
    infra.setup(ctx, ENVIRONMENT, image_tag=first.tag)
    released = deploy.deploy(
        ctx, deploy.DeployOptions(ENVIRONMENT, first.sha, timeout=300, busy=deploy.Busy.WAIT)
    )
    assert released is not None and released.url, "the first deploy found no URL"
    wrong = push_wrong_answer(ctx, good)
    expect = (ctx.settings.smoke.status, ctx.settings.smoke.text.encode())
    with Load(released.url, expect, rate=rate) as load:
        time.sleep(2)  # a baseline before anything changes
        began = load.now()
        deploy.deploy(ctx, deploy.DeployOptions(ENVIRONMENT, good.sha, timeout=300))
        middle = load.now()
        with contextlib.suppress(DeployFailed):  # the gate (or the smoke test) stops it
            deploy.deploy(ctx, deploy.DeployOptions(ENVIRONMENT, wrong.sha, timeout=300))
        ended = load.now()
        time.sleep(2)
    answers = load.answers()
    prod = ctx.settings.environment(ENVIRONMENT)  # its tasks go with it: nothing left running
    ctx.clients.aws("ecs").delete_service(cluster=prod.cluster, service=prod.service, force=True)

    def phase(low: float, high: float) -> dict[str, int]:
        inside = [a for a in answers if low <= a.sent < high]
        return {
            "served": len(inside),
            "failed": sum(a.error is not None for a in inside),
            "served_by_wrong_revision": sum(WRONG_ANSWER in (a.error or "") for a in inside),
        }

    share = [
        {"at": round(a.sent - began, 2), "revision": "new" if a.revision == good.tag else "old"}
        for a in answers
        if began <= a.sent < middle and a.error is None
    ]
    return {
        "strategy": strategy,
        "good_deploy": {"seconds": round(middle - began, 1), **phase(began, middle)},
        "wrong_deploy": {"seconds": round(ended - middle, 1), **phase(middle, float("inf"))},
        "share": share,
    }


def chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canary = next((r for r in results if r["strategy"] == "CANARY"), None)
    if canary is None or not canary["share"]:
        return
    buckets: dict[int, list[int]] = {}
    for point in canary["share"]:
        buckets.setdefault(int(point["at"]), []).append(point["revision"] == "new")
    seconds = sorted(buckets)
    new = [100 * sum(buckets[s]) / len(buckets[s]) for s in seconds]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.step(seconds, new, where="post", label="new revision")
    ax.step(seconds, [100 - n for n in new], where="post", label="old revision")
    ax.set(xlabel="seconds after the deploy began", ylabel="% of production answers", ylim=(0, 105))
    ax.set_title("A CANARY deploy (50 % canary, gate passed) under load")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests a second on the production URL")
    parser.add_argument("--only", choices=STRATEGIES, action="append", help="one strategy (repeatable)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--chart", type=Path, help="write the canary's traffic share chart here (PNG)")
    args = parser.parse_args()
    results = []
    print(f"{'strategy':<11} {'deploy':<6} {'seconds':>7} {'served':>7} {'failed':>7} {'wrong':>6}")
    for strategy in args.only or STRATEGIES:
        result = one(strategy, args.rate)
        results.append(result)
        for kind in ("good", "wrong"):
            row = result[f"{kind}_deploy"]
            print(
                f"{strategy:<11} {kind:<6} {row['seconds']:>7.1f} {row['served']:>7} {row['failed']:>7} "
                f"{row['served_by_wrong_revision']:>6}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"rate": args.rate, "results": results}, indent=2) + "\n")
    if args.chart:
        chart(results, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
