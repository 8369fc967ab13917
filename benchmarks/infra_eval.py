"""Benchmark: evaluate the prod Pulumi program under mocks with 0, 10, 50 and 100 extra hubs.

Extra hubs alternate between experimental hubs (snapshot clones) and client hubs (full Hub VMs), so
both component paths are measured. Every measured evaluation is a fresh process, one size each, as
`pulumi up` is one process evaluating the program once: the process evaluates the program at 0 extra
hubs to load its imports and first-run caches (not per-hub costs), then once at the measured size,
so no size runs on a heap grown by the sizes before it. CPU time (`time.process_time`, all threads of
the process) and wall time are taken; the figure is the CPU time: the machine's cores are shared,
and wall time then measures the neighbours as much as the program. Sizes are interleaved within
each of the REPEATS rounds, so every size sees the same load over the run.

Baseline in the same run: `--before REV` evaluates the program as it was at REV (its own
`__main__.py`, hubinfra, harness and stack file, from `git archive`), process for process
interleaved with the current tree. Peak RSS is that of the processes evaluating 100 extra hubs.

    .venv/bin/python -m benchmarks.infra_eval --before 6ef2f69 --write docs/performance.md
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SIZES = (0, 10, 50, 100)
SEGMENTS = ((0, 10), (10, 50), (50, 100))
REPEATS = 5
GOAL_SECONDS_AT_50 = 1.5
GOAL_LINEAR = 1.10  # the largest per-hub slope over the smallest
BEGIN, END = "<!-- infra_eval:begin -->", "<!-- infra_eval:end -->"


def extra_hubs(count: int) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["hub:quotas"] = {"cores": 10_000, "memoryMib": 10_000_000, "diskGb": 1_000_000, "vms": 1_000}
        experiments: list[dict[str, Any]] = []
        domain: list[dict[str, Any]] = []
        for i in range(count):
            if i % 2 == 0:
                experiments.append({"name": f"exp{i}", "checkpoint": f"hub-{i:032x}", "vmId": 5000 + i})
            else:
                domain.append(
                    {"name": f"client{i}", "type": "client", "label": f"Client {i}", "vmId": 5000 + i}
                )
        config["hub:experiments"] = experiments
        config["hub:domainHubs"] = domain

    return edit


def child(tree: Path, sizes: list[int]) -> None:
    """One pass in this (fresh) process over `tree`'s program; prints JSON on stdout."""
    sys.path.insert(0, str(tree))
    from tests.hubinfra.harness import run_program  # the tree's own harness and program

    # The tree's harness may put the collector back after each run (tests need it); here, as in the
    # real program, it stays as the program left it (trees before that option had nothing to put back).
    keep = {"restore_gc": False} if "restore_gc" in inspect.signature(run_program).parameters else {}
    run_program("prod", **keep)  # imports and first-run caches, as in any real process before the figure
    out: dict[str, Any] = {}
    for count in sizes:
        cpu, wall = time.process_time(), time.perf_counter()
        run = run_program("prod", edit=extra_hubs(count), **keep)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if run.exit_code is not None:
            raise SystemExit(f"program failed with {count} extra hubs: {run.errors}")
        out[str(count)] = {"cpu": cpu, "wall": wall, "resources": len(run.resources)}
    out["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_child(tree: Path, sizes: tuple[int, ...]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(tree), "--sizes"]
    cmd.append(",".join(map(str, sizes)))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"benchmark pass over {tree} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def export_tree(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def stats(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def slopes(medians: dict[int, float]) -> list[float]:
    """Cost per extra hub (s) over each segment."""
    return [(medians[b] - medians[a]) / (b - a) for a, b in SEGMENTS]


def summarise(runs: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """`runs[n]`: one child's answer per round for size n."""
    cpu = {n: stats([r[str(n)]["cpu"] for r in runs[n]]) for n in SIZES}
    wall = {n: stats([r[str(n)]["wall"] for r in runs[n]]) for n in SIZES}
    return {
        "cpu": cpu,
        "wall": wall,
        "resources": {n: runs[n][0][str(n)]["resources"] for n in SIZES},
        "slopes": slopes({n: cpu[n][1] for n in SIZES}),
        "wall_slopes": slopes({n: wall[n][1] for n in SIZES}),
        "maxrss_mib": statistics.median(r["maxrss_mib"] for r in runs[SIZES[-1]]),
    }


def fmt(triple: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.3f}" for v in triple)


def linearity(values: list[float]) -> float:
    return max(values) / min(values) if min(values) > 0 else float("inf")


def render(
    now: dict[str, Any], before: dict[str, Any] | None, rev: str | None, load: tuple[float, ...]
) -> str:
    lines = [
        f"Machine: {os.cpu_count()} cores shared with other work; load average at start "
        f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}. Python {platform.python_version()}. "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Each size: min / median / max over {REPEATS} fresh "
        "processes, one evaluation of that size each (after a warm-up at 0 extra hubs); CPU time of the "
        "evaluating process (all its threads), wall time beside it.",
        "",
        "| extra hubs | resources | CPU s (min / median / max) | wall s (min / median / max) |"
        + (f" before ({rev}) CPU s | before wall s | CPU after/before |" if before else ""),
        "| ---: | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if before else ""),
    ]
    for n in SIZES:
        row = f"| {n} | {now['resources'][n]} | {fmt(now['cpu'][n])} | {fmt(now['wall'][n])} |"
        if before:
            ratio = now["cpu"][n][1] / before["cpu"][n][1]
            row += f" {fmt(before['cpu'][n])} | {fmt(before['wall'][n])} | {ratio:.2f}x |"
        lines.append(row)
    lines += [
        "",
        "| segment | per extra hub, CPU (median) | per hub, wall (median) |"
        + (" before, CPU | before, wall |" if before else ""),
        "| --- | ---: | ---: |" + (" ---: | ---: |" if before else ""),
    ]
    for i, (a, b) in enumerate(SEGMENTS):
        row = f"| {a} -> {b} | {now['slopes'][i] * 1000:.1f} ms | {now['wall_slopes'][i] * 1000:.1f} ms |"
        if before:
            row += f" {before['slopes'][i] * 1000:.1f} ms | {before['wall_slopes'][i] * 1000:.1f} ms |"
        lines.append(row)
    lin, lin_wall = linearity(now["slopes"]), linearity(now["wall_slopes"])
    at50_cpu, at50_wall = now["cpu"][50][1], now["wall"][50][1]
    goals = [
        "",
        "| goal | figure | baseline, same run | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base50 = "-"
    if before:
        base50 = f"before: {before['cpu'][50][1]:.3f} s CPU, {before['wall'][50][1]:.3f} s wall"
    ratio50 = f"{at50_cpu / before['cpu'][50][1]:.2f}x" if before else "-"
    goals.append(
        f"| 50 extra hubs | {at50_cpu:.3f} s CPU, {at50_wall:.3f} s wall (median) | {base50} | {ratio50} "
        f"| <= {GOAL_SECONDS_AT_50} s | {'yes' if at50_cpu <= GOAL_SECONDS_AT_50 else 'no'} (CPU); "
        f"{'yes' if at50_wall <= GOAL_SECONDS_AT_50 else 'no'} (wall) |"
    )
    base_lin = (
        f"before: {linearity(before['slopes']):.2f} (CPU), {linearity(before['wall_slopes']):.2f} (wall)"
        if before
        else "-"
    )
    goals.append(
        f"| linear 0 -> 100: largest per-hub slope / smallest | {lin:.2f} (CPU), {lin_wall:.2f} (wall) | "
        f"{base_lin} | - | <= {GOAL_LINEAR:.2f} | {'yes' if lin <= GOAL_LINEAR else 'no'} (CPU); "
        f"{'yes' if lin_wall <= GOAL_LINEAR else 'no'} (wall) |"
    )
    rss = f"{now['maxrss_mib']:.0f} MiB" + (f" (before: {before['maxrss_mib']:.0f} MiB)" if before else "")
    goals.append(f"| peak RSS, one process evaluating 100 extra hubs | {rss} | - | - | - | - |")
    return "\n".join(lines + goals)


def write_into(path: Path, block: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--before", help="git revision to measure in the same run as the baseline")
    parser.add_argument("--write", type=Path, help="replace the infra_eval block in this Markdown file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, [int(s) for s in args.sizes.split(",")])
        return
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="infra-eval-") as tmp:
        trees = {"now": REPO}
        if args.before:
            trees["before"] = export_tree(args.before, Path(tmp))
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {k: {n: [] for n in SIZES} for k in trees}
        for _ in range(REPEATS):
            for n in SIZES:
                for key, tree in trees.items():  # interleaved: both trees see the same load
                    runs[key][n].append(run_child(tree, (n,)))
    now = summarise(runs["now"])
    before = summarise(runs["before"]) if "before" in runs else None
    block = render(now, before, args.before, load)
    print(block)
    if args.write:
        write_into(args.write, block)


if __name__ == "__main__":
    main()
