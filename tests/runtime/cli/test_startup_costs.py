"""What makes a short ``hubctl`` call cheap must not change what it does (runtime/cli/process.py,
runtime/db/session.py): exit codes, output, atexit hooks, threads, the schema checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runtime.db import Database
from runtime.db.session import MIGRATIONS, read_head_revision
from tests.support.hubenv import REPO


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_the_head_read_from_the_versions_folder_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert read_head_revision(MIGRATIONS / "versions") == ScriptDirectory.from_config(cfg).get_current_head()


def test_an_unusual_history_is_left_to_alembic(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text('revision = "b"\ndown_revision = "a"\n')
    assert read_head_revision(tmp_path) == "b"
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = "a"\n')  # two heads
    assert read_head_revision(tmp_path) is None
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = ("a", "b")\n')  # a merge
    assert read_head_revision(tmp_path) is None


def test_the_current_revision_is_alembics(tmp_path: Path) -> None:
    from alembic.runtime.migration import MigrationContext

    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    assert db.current_revision() is None  # no alembic_version table yet
    db.upgrade()
    with db.engine.connect() as conn:
        assert db.current_revision() == MigrationContext.configure(conn).get_current_revision()
    assert db.current_revision() == db.head_revision()
    db.dispose()


def test_a_fast_exit_keeps_the_code_the_output_and_the_atexit_hooks() -> None:
    result = _python(
        "import atexit, sys\n"
        "from runtime.cli import process\n"
        "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
        "sys.stdout.write('partial line without a newline')\n"
        "process.end(3)\n",
    )
    assert result.returncode == 3
    assert result.stdout == "partial line without a newline"
    assert "atexit ran" in result.stderr


def test_a_live_thread_gets_the_normal_exit(tmp_path: Path) -> None:
    marker = tmp_path / "thread-finished"
    result = _python(
        "import threading, time, pathlib\n"
        "from runtime.cli import process\n"
        f"def work(): time.sleep(0.3); pathlib.Path({str(marker)!r}).write_text('done')\n"
        "threading.Thread(target=work).start()\n"
        "process.end(0)\n",
    )
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "done"  # the interpreter joined the thread, as without process.end


def test_a_long_running_command_gets_the_collector_back() -> None:
    result = _python(
        "import gc\n"
        "from runtime.cli import process\n"
        "process.start(); assert not gc.isenabled()\n"
        "process.long_running(); assert gc.isenabled()\n"
        "process.end(0)\n",
    )
    assert result.returncode == 0, result.stderr


def test_every_command_that_stays_up_says_so() -> None:
    """A command that runs until stopped must turn the collector back on and keep the normal exit;
    the ones interfaces.md names (today's and those to come) are found by name in the whole tree."""
    import inspect

    import typer

    from runtime.cli import app

    stays_up = {"serve", "lab", "schedule", "worker", "watch"}
    root = typer.main.get_command(app)
    ctx = typer.Context(root)
    found: list[str] = []
    for name in root.list_commands(ctx):  # pyright: ignore[reportAttributeAccessIssue]
        command = root.get_command(ctx, name)  # pyright: ignore[reportAttributeAccessIssue]
        subs = getattr(command, "commands", {name: command})
        for sub_name, sub in subs.items():
            if sub_name in stays_up and sub.callback is not None:
                found.append(sub_name)
                assert "process.long_running()" in inspect.getsource(sub.callback), sub_name
    assert {"serve", "lab", "schedule"} <= set(found)
