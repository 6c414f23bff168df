"""docs/benchmarks.md and docs/benchmarks.png from one run's figures (bench/benchmark.py)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], unit: str = " s", digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit}"
    return f"{med(values):.{digits}f}{unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


DEPS_CACHE_MISS = "see bench/notes.md"


def verdict(ok: bool, miss: str = "") -> str:
    return "**met**" if ok else f"**missed**{f' ({miss})' if miss else ''}"


def write(results: dict[str, Any], report: Path, chart: Path) -> None:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `python bench/benchmark.py` (see bench/README.md). Each section's figures come",
        "from one run, listed below the machine. Medians, with min–max in brackets.",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; Python {m['python']},",
        f"moto {m['moto']}, botocore {m['botocore']}, {m.get('ecs-deploy', 'ecs-deploy ?')}, {m.get('aws', '')}, {m.get('jq', '')}.",
        f"Run {m['date']}. Load average before: `{m['load_before']}`; after: `{m.get('load_after', '?')}`",
        "(the machine's 2 cores are shared with other engineers' test runs: single figures wander).",
        "",
    ]
    measured = results.get("measured")
    if measured:
        lines += [
            "Sections measured in different runs (a section run alone keeps the others' figures):",
            *[f"- {section}: {when}" for section, when in sorted(measured.items())],
            "",
        ]
    summary: list[str] = ["| target | measured | verdict |", "|---|---|---|"]

    deploy = results.get("deploy")
    if deploy:
        ours, fab = deploy["ours"], deploy.get("fabfuel")
        ratio = med(ours["wall"]) / med(fab["wall"]) if fab else float("nan")
        lock = med(ours.get("lock_calls", [0]))
        calls = med(ours["calls"]) - lock
        summary.append(
            f"| one deploy ≤ 1.0× `ecs deploy` wall, ≤ 6 AWS calls besides the deploy lock's | "
            f"{ratio:.2f}×, {calls:g} calls (+{lock:g} for the lock) | "
            f"{verdict(ratio <= 1.0 and calls <= 6, f'{(ratio - 1) * 100:+.0f} % wall' if ratio > 1 else 'calls')} |"
        )
    detection = results.get("detection")
    if detection:
        latencies = [
            r["latency"] for rows in detection.values() for r in rows["ours"] if r["latency"] is not None
        ]
        long = detection.get("30", {}).get("ours", [])
        rate = med([r["describes_per_min"] for r in long]) if long else float("nan")
        lat = med(latencies)
        summary.append(
            f"| detection ≤ 1 s median after completion, ≤ 30 DescribeServices/min, one call per poll | "
            f"{lat:.2f} s, {rate:.0f}/min at D = 30 s (computed 30 s–10 min: see below) | "
            f"{verdict(lat <= 1.0 and rate <= 30, f'{lat:.2f} s, {rate:.0f}/min')} |"
        )
    fleet = results.get("fleet")
    if fleet:
        one, many = fleet["ours"]["1"], next(v for k, v in fleet["ours"].items() if k != "1")
        size = next(k for k in fleet["ours"] if k != "1")
        wall = med([r["wall"] for r in many]) / med([r["wall"] for r in one])
        calls = med([r["describes"] for r in many]) / med([r["describes"] for r in one])
        summary.append(
            f"| fleet: {size} services ≤ 2× the wall of one, ≤ 3× its DescribeServices | {wall:.2f}×, {calls:.2f}× | "
            f"{verdict(wall <= 2 and calls <= 3, f'{wall:.2f}× wall, {calls:.2f}× calls')} |"
        )
    startup = results.get("startup")
    if startup:
        ratio = med(startup["ours"]) / med(startup["bare"])
        summary.append(
            f"| `invoke --list` ≤ 1.5× a bare Invoke project | {ratio:.2f}× | "
            f"{verdict(ratio <= 1.5, f'{ratio:.2f}×')} |"
        )
    images = results.get("images")
    if images:
        code = med(images["code_only"]) / med(images["cold"])
        seeded = med(images["cache_from_ecr"]) / med(images["cold"])
        own = med(images["own_layers_bytes"]) / 1024
        summary.append(
            f"| code-only rebuild ≤ 15 % of a cold build | {code * 100:.0f} % | "
            f"{verdict(code <= 0.15, f'by {(code - 0.15) * 100:.0f} points')} |"
        )
        summary.append(
            f"| `--cache-from-ecr` on an empty cache ≤ 30 % of a no-cache build | {seeded * 100:.0f} % | "
            f"{verdict(seeded <= 0.30, f'by {(seeded - 0.30) * 100:.0f} points')} |"
        )
        summary.append(f"| hello_world's own layers < 100 KB | {own:.1f} KB | {verdict(own < 100)} |")
    deps = results.get("deps")
    if deps:
        cold = med(deps["cold"])
        code, seeded = med(deps["code_only"]) / cold, med(deps["cache_from_ecr"]) / cold
        moved = med(deps["moved_bytes"]) / med(deps["image_bytes"])
        summary.append(
            f"| dependency-heavy service: code-only rebuild ≤ 10 % of cold | {code * 100:.1f} % | "
            f"{verdict(code <= 0.10, f'by {(code - 0.10) * 100:.0f} points')} |"
        )
        summary.append(
            f"| dependency-heavy service: `--cache-from-ecr` on an empty cache ≤ 25 % of cold | {seeded * 100:.0f} % | "
            f"{verdict(seeded <= 0.25, DEPS_CACHE_MISS)} |"
        )
        summary.append(
            f"| dependency-heavy service: a code-only push moves ≤ 5 % of the image's bytes | {moved * 100:.3f} % "
            f"({med(deps['moved_layers']):g} layer) | {verdict(moved <= 0.05)} |"
        )
    if startup and "help_fabfuel" in startup:
        ratio = med(startup["help_ours"]) / med(startup["help_fabfuel"])
        summary.append(
            f"| `invoke --help deploy` vs `ecs deploy --help` (no target; start-up floor) | {ratio:.2f}× | – |"
        )
    lines += ["## Targets", "", *summary, "", "![charts](benchmarks.png)", ""]

    if deploy:
        lines += [
            "## One deploy, instant rollout",
            "",
            "Each tool deploys a freshly arranged service (its own cluster, behind a target group)",
            "as a user runs it, the tools interleaved run by run after one uncounted warm-up round;",
            "`AWS_ACCOUNT_ID` is unset for ours and fabfuel (the seed's script needs it).",
            "",
            "| tool | wall | AWS calls | which |",
            "|---|---|---|---|",
        ]
        for tool, row in deploy.items():
            which = ", ".join(f"{k.split(':')[1]} ×{v}" for k, v in row["which"].items())
            lines.append(f"| {tool} | {spread(row['wall'])} | {med(row['calls']):g} | {which} |")
        lines.append("")
    if detection:
        lines += [
            "## Detection: how long after the rollout completes each tool returns",
            "",
            "The rollout completes D seconds after the emulator answered the tool's UpdateService",
            "(PENDING for 40 % of D, then RUNNING while the old task drains for the target group's",
            "deregistration delay, 60 % of D). Latency: from then to the tool's exit (negative: it",
            "returned before the rollout had completed). DescribeServices a minute: from the update",
            "to the exit.",
            "",
            "| D | tool | runs | wall | latency | DescribeServices (per minute) | AWS calls |",
            "|---|---|---|---|---|---|---|",
        ]
        for delay, rows in detection.items():
            for tool, runs in rows.items():
                lat = [r["latency"] for r in runs if r["latency"] is not None]
                lines.append(
                    f"| {delay} s | {tool} | {len(runs)} | {spread([r['wall'] for r in runs])} | {spread(lat)} | "
                    f"{med([r['describes'] for r in runs]):g} ({med([r['describes_per_min'] for r in runs]):.0f}/min) | "
                    f"{med([r['calls'] for r in runs]):g} |"
                )
        lines.append("")
    if results.get("schedule"):
        lines += [
            "### The schedule's reasoning (pipeline/pace.py), computed",
            "",
            "A rollout cannot complete while its new tasks are not RUNNING, nor before the old ones",
            "have drained for the deregistration delay. So: polls ramp up (0.5, 1, 2 s apart) to",
            "catch short rollouts and early failures, then every 5 s while tasks are PENDING. Once",
            "they are RUNNING, completion is possible from the moment they started plus",
            "max(grace period, deregistration delay). That moment is after the poll that still saw",
            "them PENDING, and not before the deployment's `updatedAt` (ECS stamps it when the",
            "counts change) less 1 s for the clocks; the later of the two is used. The delay is",
            "looked up once, with one DescribeTargetGroupAttributes, only for a rollout still",
            "draining behind a load balancer. It sleeps towards that moment (≤ 5 s at a time, so",
            "failures still show), then polls every 0.5 s. Every poll is one DescribeServices call.",
            "",
            "Computed for PHASES-shaped rollouts, 10 start offsets each:",
            "",
            "| rollout | latency median (max) | DescribeServices per minute | polls |",
            "|---|---|---|---|",
        ]
        for row in results["schedule"]:
            lines.append(
                f"| {row['rollout']} s | {row['latency_median']:.2f} s ({row['latency_max']:.2f}) | "
                f"{row['polls_per_min']:.1f} | {row['polls']} |"
            )
        lines.append("")
    if fleet:
        lines += [
            "## Fleet: one release of many services (5-s rollouts)",
            "",
            "`invoke release --no-smoke` of 1 and of many services in one cluster (3 runs each); the",
            "peers have no multi-service mode, so they deploy the same number of services one after",
            "the other (1 run).",
            "",
            "| tool | services | wall | DescribeServices | all AWS calls |",
            "|---|---|---|---|---|",
        ]
        for tool, sizes in fleet.items():
            for size, runs in sizes.items():
                calls = f"{med([r['calls'] for r in runs]):g}" if "calls" in runs[0] else "–"
                lines.append(
                    f"| {tool} | {size} | {spread([r['wall'] for r in runs])} | "
                    f"{med([r['describes'] for r in runs]):g} | {calls} |"
                )
        lines.append("")
    if startup:
        lines += [
            "## Start-up",
            "",
            "`python -m invoke --list` in this repository against the same in a directory whose",
            "tasks.py has one trivial task, in turn, 10 runs each after a warm-up.",
            "",
            "| command | wall |",
            "|---|---|",
            f"| `invoke --list`, bare Invoke project | {spread(startup['bare'], digits=3)} |",
            f"| `invoke --list`, this project | {spread(startup['ours'], digits=3)} |",
            f"| ratio, run by run | {spread(startup['ratio'], unit='×')} |",
            *(
                [
                    f"| `invoke --help deploy`, this project | {spread(startup['help_ours'], digits=3)} |",
                    f"| `ecs deploy --help` (fabfuel) | {spread(startup['help_fabfuel'], digits=3)} |",
                ]
                if "help_fabfuel" in startup
                else []
            ),
            "",
        ]
    if images:
        lines += [
            "## Images (local stack)",
            "",
            "Each run: `invoke dockerize` in a throwaway copy of the project on a fresh base image id",
            "(nothing above the base cached: cold = no-cache), then a one-line change to app.py and",
            "`dockerize` again (code-only), then `push`, every local image of the run removed (CI's",
            "empty cache) and another change built with `dockerize --cache-from-ecr` (its time",
            "includes the ECR look-up, login and pull). Whole-command wall times.",
            "",
            "| build | wall | share of cold |",
            "|---|---|---|",
            f"| cold (no cache) | {spread(images['cold'])} | 100 % |",
            f"| code-only rebuild | {spread(images['code_only'])} | {med(images['code_only']) / med(images['cold']) * 100:.0f} % |",
            f"| `--cache-from-ecr`, empty cache | {spread(images['cache_from_ecr'])} | "
            f"{med(images['cache_from_ecr']) / med(images['cold']) * 100:.0f} % |",
            f"| hello_world's own layers | {med(images['own_layers_bytes']) / 1024:.1f} KB | |",
            "",
        ]
    if deps:
        mb = 1e6
        lines += [
            "## Dependency-heavy service: build and push (local stack)",
            "",
            "bench/deps_build.py: bench/heavy (numpy, pandas, pydantic, SQLAlchemy, Flask, gunicorn;",
            "21 distributions, about 37 MB of wheels) scaffolded by `ecs-pipeline init` in a throwaway",
            "repository, every step a task run as a user runs it, on a fresh base image id and an empty",
            "wheelhouse cache (pip's own download cache is the host's, as on a developer's machine).",
            "Builds here have no network, so dockerize resolves the wheels with the host's pip",
            "(README: Dependencies in the image). Whole-command wall times; load average at the end",
            f"of the run: `{' '.join(deps['load'][0]) if deps.get('load') else '?'}`.",
            "",
            "| step | wall | share of cold |",
            "|---|---|---|",
            f"| cold build (no layer, no wheelhouse) | {spread(deps['cold'])} | 100 % |",
            f"| code-only rebuild | {spread(deps['code_only'])} | {med(deps['code_only']) / med(deps['cold']) * 100:.1f} % |",
            f"| rebuild after a requirements change (one package added) | {spread(deps['requirements_change'])} | "
            f"{med(deps['requirements_change']) / med(deps['cold']) * 100:.0f} % |",
            f"| `--cache-from-ecr`, empty cache (no local image, no wheelhouse) | {spread(deps['cache_from_ecr'])} | "
            f"{med(deps['cache_from_ecr']) / med(deps['cold']) * 100:.0f} % |",
            "",
            "| push | wall | bytes moved | of the image |",
            "|---|---|---|---|",
            f"| first push (empty repository) | {spread(deps['push_first'])} | {med(deps['image_bytes']) / mb:.1f} MB | 100 % |",
            f"| code-only change | {spread(deps['push_code_only'])} | {med(deps['moved_bytes']) / 1e3:.1f} kB "
            f"({med(deps['moved_layers']):g} layer) | {med(deps['moved_bytes']) / med(deps['image_bytes']) * 100:.3f} % |",
            "",
            "Bytes are the registry's compressed layer sizes (its manifests), so what moved is exact.",
            "",
        ]
    notes = Path(__file__).with_name("notes.md")  # the analysis of a run's misses, by a person
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    report.parent.mkdir(exist_ok=True)
    report.write_text("\n".join(lines))
    _chart(results, chart)


def _chart(results: dict[str, Any], chart: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if "deploy" in results:
        panels.append(
            ("one deploy, instant rollout: wall (s)", {t: r["wall"] for t, r in results["deploy"].items()})
        )
    if "detection" in results:
        for delay, rows in results["detection"].items():
            panels.append(
                (
                    f"return after a {delay}-s rollout completed (s)",
                    {t: [r["latency"] for r in rs] for t, rs in rows.items()},
                )
            )
    if "fleet" in results:
        bars = {}
        for tool, sizes in results["fleet"].items():
            for size, runs in sizes.items():
                bars[f"{tool} ×{size}"] = [r["wall"] for r in runs]
        panels.append(("release of many services: wall (s)", bars))
    if "startup" in results:
        panels.append(
            ("invoke --list (s)", {"bare": results["startup"]["bare"], "ours": results["startup"]["ours"]})
        )
    if "images" in results:
        im = results["images"]
        panels.append(
            (
                "image builds (s)",
                {"cold": im["cold"], "code-only": im["code_only"], "cache-from-ecr": im["cache_from_ecr"]},
            )
        )
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 4.2 * rows), squeeze=False)
    for ax, (title, bars) in zip(axes.flat, panels, strict=False):
        names = list(bars)
        values = [[v for v in bars[n] if v is not None] for n in names]
        medians = [med(v) for v in values]
        low = [m - min(v) for m, v in zip(medians, values, strict=True)]
        high = [max(v) - m for m, v in zip(medians, values, strict=True)]
        colors = ["#2b7bba" if n.startswith("ours") else "#999999" for n in names]
        ax.bar(names, medians, yerr=[low, high], capsize=4, color=colors)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8, rotation=15)
        for i, value in enumerate(medians):
            ax.annotate(f"{value:.2f}", (i, value), ha="center", va="bottom", fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("ecs-pipeline benchmarks: medians, bars show min–max (docs/benchmarks.md)")
    fig.tight_layout()
    fig.savefig(chart, dpi=90)
