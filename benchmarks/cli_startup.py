"""Benchmark: what one ``hubctl`` call costs, against a bare typer app with the same command tree.

    .venv/bin/python -m benchmarks.cli_startup [--runs 7] [--before REF] [--write docs/performance.md]

Every figure is a fresh process (a sentinel or a script calling ``hubctl`` per VM pays exactly
this), timed from spawn to exit, after one warm-up run; min and median of ``--runs``. Measured in
the same run:

- baselines: ``python -c pass``, and a bare typer app generated from the real tree (every command
  and sub-command name with its help line, no parameters, no imports of ours), ``--help``;
- ``hubctl --help``; ``checkpoint list --json`` and ``health --json`` (no Proxmox configured) on an
  empty SQLite database; ``checkpoint list`` and ``checkpoint prune --dry-run`` as text with 10,000
  rows (inserted through the runtime's own migrations and models);
- with ``--before REF``, the same commands on the code at REF (``git archive`` into a temporary
  directory, run with this virtualenv): the "before" column.

Peak RSS comes from ``wait4`` (this process imports none of the runtime, so that a child's figure
is not inflated by the parent it was forked from: building the data and the bare app run in
subprocesses); the module count from one extra run of the command in-process (``runtime.cli.run``)
that prints ``len(sys.modules)``. No timing here is asserted anywhere: the
figures go to docs/performance.md (``--write``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROWS = 10_000
VMID = 100
MODULES_PROBE = """
import sys
from runtime.cli import run
run(sys.argv[1:])
print(len(sys.modules), file=sys.stderr)
"""


@dataclass(frozen=True)
class Figure:
    name: str
    times: list[float]
    rss_mib: float
    modules: int | None
    code: int

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def timed(argv: Sequence[str], *, env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one process, output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def measure(
    name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path, runs: int, probe: Sequence[str] | None
) -> Figure:
    timed(argv, env=env, cwd=cwd)  # warm-up: bytecode, page cache
    samples = [timed(argv, env=env, cwd=cwd) for _ in range(runs)]
    modules = None
    if probe is not None:
        done = subprocess.run(
            [sys.executable, "-c", MODULES_PROBE, *probe], env=env, cwd=cwd, capture_output=True, text=True
        )
        modules = int(done.stderr.strip().splitlines()[-1])
    return Figure(
        name=name,
        times=[t for t, _, _ in samples],
        rss_mib=max(r for _, r, _ in samples),
        modules=modules,
        code=samples[-1][2],
    )


# ------------------------------------------------------------------ the bare app


def bare_app_source() -> str:
    """A typer program with the real tree's names and help lines and nothing else."""
    import typer

    from runtime.cli import app

    root = typer.main.get_command(app)
    ctx = typer.Context(root)
    lines = [
        "import typer",
        f"app = typer.Typer(name='hubctl', help={root.help!r}, no_args_is_help=True, add_completion=False)",
    ]
    for i, name in enumerate(root.list_commands(ctx)):  # pyright: ignore[reportAttributeAccessIssue]
        command: Any = root.get_command(ctx, name)  # pyright: ignore[reportAttributeAccessIssue]
        helptext = (command.help or "").strip()
        subs = command.list_commands(ctx) if hasattr(command, "list_commands") else None
        if subs is None:
            lines.append(f"@app.command({name!r}, help={helptext!r})\ndef c{i}() -> None: pass")
            continue
        lines.append(f"s{i} = typer.Typer(help={helptext!r}, no_args_is_help=True)")
        lines.append(f"app.add_typer(s{i}, name={name!r})")
        for j, sub in enumerate(subs):
            subhelp = (command.get_command(ctx, sub).help or "").strip()
            lines.append(f"@s{i}.command({sub!r}, help={subhelp!r})\ndef c{i}_{j}() -> None: pass")
    lines.append("app(prog_name='hubctl')")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the data


def fill(database_url: str, rows: int) -> None:
    """``rows`` completed checkpoints of one VM, one an hour back from now, through our own models."""
    from runtime.db import Checkpoint, Database

    db = Database(database_url)
    db.upgrade()
    now = datetime.now(UTC)
    with db.session() as s:
        s.add_all(
            Checkpoint(
                uuid=str(uuid.uuid4()),
                vm_id=VMID,
                node="pve1",
                snapname=f"hub-{n:08x}",
                kind="scheduled",
                status="completed",
                created_at=now - timedelta(hours=n),
                completed_at=now - timedelta(hours=n) + timedelta(seconds=2),
            )
            for n in range(rows)
        )
    db.dispose()


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    goal: str
    data: str  # "empty" or "rows"
    proxmox: bool = False


CASES = (
    Case("hubctl --help", ("--help",), "<= 2x bare typer --help", "empty"),
    Case("checkpoint list --json (empty)", ("checkpoint", "list", "--json"), "<= 0.3 s", "empty"),
    Case("health --json (no Proxmox, empty)", ("health", "--json"), "<= 0.3 s", "empty"),
    Case(f"checkpoint list, text, {ROWS:,} rows", ("checkpoint", "list"), "-", "rows"),
    Case(
        f"checkpoint prune --dry-run, text, {ROWS:,} rows",
        ("checkpoint", "prune", "--dry-run"),
        "-",
        "rows",
        proxmox=True,
    ),
    Case(f"checkpoint list --json, {ROWS:,} rows", ("checkpoint", "list", "--json"), "-", "rows"),
)


def hub_env(root: Path, *, database: str, proxmox: bool, pythonpath: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_DATABASE_URL=f"sqlite:///{root / database}", HUB_VMID=str(VMID), HUB_LOCK_DIR=str(root / "locks")
    )
    env["PYTHONPATH"] = str(pythonpath)
    if proxmox:  # prune builds the Proxmox client (never contacted on a dry run)
        env.update(HUB_PROXMOX_URL="https://127.0.0.1:9", HUB_PROXMOX_API_TOKEN="bench@pve!bench=" + "0" * 36)
    return env


def run_all(*, runs: int, before: str | None) -> dict[str, Any]:
    hubctl = str(Path(sys.executable).with_name("hubctl"))
    with tempfile.TemporaryDirectory(prefix="hub-bench-cli-") as tmp:
        root = Path(tmp)
        helper = [sys.executable, "-m", "benchmarks.cli_startup"]
        subprocess.run([*helper, "--fill", f"sqlite:///{root / 'rows.db'}"], cwd=REPO, check=True)
        subprocess.run([*helper, "--bare-app", str(root / "bare.py")], cwd=REPO, check=True)
        trees = {"after": REPO}
        if before:
            old = root / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", before], cwd=REPO, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
            trees["before"] = old
        base_env = hub_env(root, database="empty.db", proxmox=False, pythonpath=REPO)
        results: dict[str, Any] = {
            "pass": measure(
                "python -c pass",
                [sys.executable, "-c", "pass"],
                env=base_env,
                cwd=root,
                runs=runs,
                probe=None,
            ),
            "bare": measure(
                "bare typer app --help",
                [sys.executable, str(root / "bare.py"), "--help"],
                env=base_env,
                cwd=root,
                runs=runs,
                probe=None,
            ),
            "cases": [],
        }
        for case in CASES:
            row: dict[str, Any] = {"case": case}
            for label, tree in trees.items():
                # Each tree gets its own copy of the data, so one's migrations never touch the other's.
                database = f"{label}-{case.data}.db"
                if case.data == "rows" and not (root / database).exists():
                    (root / database).write_bytes((root / "rows.db").read_bytes())
                env = hub_env(root, database=database, proxmox=case.proxmox, pythonpath=tree)
                row[label] = measure(
                    case.name, [hubctl, *case.args], env=env, cwd=root, runs=runs, probe=list(case.args)
                )
            results["cases"].append(row)
        return results


# ------------------------------------------------------------------ the report


def report(results: dict[str, Any], *, runs: int, before: str | None) -> str:
    bare: Figure = results["bare"]
    py: Figure = results["pass"]
    out = [
        f"Machine: {os.cpu_count()} cores, shared with other work (figures vary ~10-20% between runs);",
        f"Python {sys.version.split()[0]}. Each figure: min / median of {runs} fresh processes after a"
        " warm-up.",
        "",
        "| baseline (same run) | min | median | peak RSS |",
        "| --- | --- | --- | --- |",
        f"| `python -c pass` | {py.best:.3f} s | {py.median:.3f} s | {py.rss_mib:.0f} MiB |",
        f"| bare typer app, same command tree, `--help` | {bare.best:.3f} s | {bare.median:.3f} s "
        f"| {bare.rss_mib:.0f} MiB |",
        "",
    ]
    head = "| command | min / median | peak RSS | modules | exit |"
    rule = "| --- | --- | --- | --- | --- |"
    if before:
        head += f" before ({before}) min / median | before RSS | before modules | after/before |"
        rule += " --- | --- | --- | --- |"
    head += " vs bare typer `--help` (min) | goal | met |"
    rule += " --- | --- | --- |"
    out += [head, rule]
    for row in results["cases"]:
        case: Case = row["case"]
        after: Figure = row["after"]
        line = (
            f"| `hubctl {' '.join(case.args)}`"
            + (f" ({ROWS:,} rows)" if case.data == "rows" else "")
            + f" | {after.best:.3f} / {after.median:.3f} s | {after.rss_mib:.0f} MiB | {after.modules} "
            f"| {after.code} |"
        )
        if before:
            old: Figure = row["before"]
            line += (
                f" {old.best:.3f} / {old.median:.3f} s | {old.rss_mib:.0f} MiB | {old.modules} "
                f"| {after.best / old.best:.2f}x |"
            )
        ratio = after.best / bare.best
        line += f" {ratio:.2f}x | {case.goal} | {_met(case, after, ratio)} |"
        out.append(line)
    return "\n".join(out) + "\n"


def _met(case: Case, figure: Figure, ratio: float) -> str:
    if case.goal.startswith("<= 2x"):
        return "yes" if ratio <= 2 else "no"
    if case.goal == "<= 0.3 s":
        return "yes" if figure.best <= 0.3 else "no"
    return "-"


BEGIN = "<!-- cli_startup:begin -->"
END = "<!-- cli_startup:end -->"


def write(path: Path, table: str) -> None:
    """Replace the generated block of ``path`` (between the markers), keeping the prose around it."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{table}{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description="What one hubctl call costs.")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--before", help="a git ref to measure side by side (e.g. the commit before a change)"
    )
    parser.add_argument("--write", type=Path, help="replace the generated block in this markdown file")
    parser.add_argument("--fill", metavar="DATABASE_URL", help=argparse.SUPPRESS)  # run in a subprocess
    parser.add_argument("--bare-app", type=Path, help=argparse.SUPPRESS)  # run in a subprocess
    args = parser.parse_args()
    if args.fill:
        fill(args.fill, ROWS)
        return
    if args.bare_app:
        args.bare_app.write_text(bare_app_source(), encoding="utf-8")
        return
    results = run_all(runs=args.runs, before=args.before)
    table = report(results, runs=args.runs, before=args.before)
    print(table)
    if args.write:
        write(args.write, table)


if __name__ == "__main__":
    main()
