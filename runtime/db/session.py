"""Engine and session factory, and the migration entry points (Alembic).

Every read command asks "is the schema at head?" (``ensure_ready``) before it reads. Alembic's
script machinery costs ~80 ms to import, more than the read itself, so that question is answered
without it: the database's revision is one plain ``SELECT`` of ``alembic_version``, and the code's
head is read from the ``revision``/``down_revision`` lines of the files in ``migrations/versions``.
Alembic is imported only to migrate, and whenever that cheap reading is not certain (a branched
history, several revisions in the table), so its answer and its errors stay the reference
(tests/runtime/cli/test_startup_costs.py checks both readings agree).
"""

from __future__ import annotations

import atexit
import re
import weakref
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DatabaseError as DriverDatabaseError
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from runtime.errors import DatabaseError, SettingsError
from runtime.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# The database cannot serve (unreachable, restarting, every pooled connection busy for the pool's
# timeout, or the file is not a database at all): a DatabaseError (one line and exit 1 in the CLI,
# 503 at the API, retried by outcome writes), never a traceback or an unhandled 500. The driver's
# DatabaseError is the base of OperationalError, ProgrammingError and the rest; IntegrityError is
# not in this family: the stores catch it (a name taken, a lease row raced) and decide.
UNAVAILABLE = (DriverDatabaseError, PoolTimeoutError)
VERSION_TABLE = "alembic_version"  # Alembic's default; env.py does not change it
# `revision = "0002"` / `down_revision = "0001"` (or None): how Alembic's template writes them.
_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


class Database:
    """One engine per process; sessions are short and explicit (``with db.session() as s``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = _make_engine(url)
        # OSError: the SQLite file's folder cannot be made (a file in the way, a read-only file system).
        except (SQLAlchemyError, ValueError, ImportError, OSError) as exc:
            raise SettingsError("HUB_DATABASE_URL", f"cannot use {_safe_url(url)}: {exc}") from None
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._ready = False
        _LIVE.add(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Generator[Session, None, None]:
        """A session in one transaction: committed on success, rolled back on error."""
        try:
            with self._factory.begin() as session:
                yield session
        except IntegrityError:
            raise
        except UNAVAILABLE as exc:
            raise DatabaseError(f"database error ({_safe_url(self.url)}): {reason(exc)}") from None

    def alembic_config(self) -> Config:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self) -> tuple[str | None, str]:
        """Apply every pending migration; returns (revision before, revision after). Idempotent.

        A database already at head is left alone without importing Alembic: its script machinery,
        Mako and Pygments cost ~13 MiB that a long-running ``serve`` would keep for its whole life
        only to learn there was nothing to do. Only the cheap reading decides that (a single head
        read from the versions folder, a single row in the table); anything less certain is
        Alembic's to answer, as before."""
        before = self.current_revision()
        if before is not None and before == read_head_revision(MIGRATIONS / "versions"):
            return before, before
        from alembic import command

        try:
            command.upgrade(self.alembic_config(), "head")
        except UNAVAILABLE as exc:
            raise DatabaseError(f"cannot migrate {_safe_url(self.url)}: {reason(exc)}") from None
        return before, self.head_revision()

    def current_revision(self) -> str | None:
        """The revision in ``alembic_version`` (None on an empty database), as Alembic reads it."""
        try:
            with self.engine.connect() as conn:
                if not self.engine.dialect.has_table(conn, VERSION_TABLE):
                    return None
                rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
                if len(rows) <= 1:
                    return rows[0] if rows else None
                from alembic.runtime.migration import MigrationContext  # its error for several heads

                return MigrationContext.configure(conn).get_current_revision()
        except UNAVAILABLE as exc:
            raise DatabaseError(f"cannot reach {_safe_url(self.url)}: {reason(exc)}") from None

    def head_revision(self) -> str:
        """The newest migration of the code: read from the versions folder, Alembic if that is unsure."""
        head = read_head_revision(MIGRATIONS / "versions")
        if head is None:
            from alembic.script import ScriptDirectory

            head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        assert head is not None
        return head

    def ensure_ready(self) -> None:
        """Refuse to work on a database that is behind the code.

        The embedded SQLite default migrates itself (a newcomer's first command should just work);
        PostgreSQL is migrated explicitly (``hubctl db upgrade``, or the service's start-up pipeline)
        so that a schema change on a shared database is always a deliberate step.
        """
        if self._ready:
            return  # schema changes only through upgrade(); once at head, stays at head for us
        if self.current_revision() == self.head_revision():
            self._ready = True
            return
        if self.is_sqlite:
            self.upgrade()
            self._ready = True
            return
        raise DatabaseError("the database schema is not up to date: run `hubctl db upgrade`")

    def dispose(self) -> None:
        self.engine.dispose()


# Every Database still referenced, closed at exit: a short hubctl command ends with os._exit after the
# atexit hooks (runtime/cli/process.py), so pooled connections are closed here rather than by the
# interpreter's teardown (a clean goodbye to PostgreSQL; SQLite checkpoints its WAL on close).
_LIVE: weakref.WeakSet[Database] = weakref.WeakSet()


@atexit.register
def _dispose_all() -> None:
    for db in list(_LIVE):
        db.dispose()


def read_head_revision(versions: Path) -> str | None:
    """The one revision no other migration revises, from each file's ``revision``/``down_revision``
    lines; None when that is not one plain string (merges, branches, unusual files): ask Alembic."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in versions.glob("*.py"):
        found: dict[str, str] = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        revision, down = found.get("revision", ""), found.get("down_revision", "")
        if not _is_plain_string(revision) or not (down == "None" or _is_plain_string(down)):
            return None
        revisions.add(revision[1:-1])
        if down != "None":
            revised.add(down[1:-1])
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 and revised <= revisions else None


def _is_plain_string(literal: str) -> bool:
    return re.fullmatch(r"""(["'])[A-Za-z0-9_]+\1""", literal) is not None


def _make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        # Several hubctl processes share the file: wait for each other's write locks instead of
        # failing at once, and let readers proceed beside a writer.
        kwargs["connect_args"] = {"timeout": 30}
        engine = create_engine(url, **kwargs)
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            # The default lives in a per-user data directory (settings.default_data_dir) that a
            # fresh account does not have yet; SQLite creates the file, not its directory.
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pyright: ignore[reportUnusedFunction]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives any process crash (kill -9) intact; only an OS crash or power cut
            # can lose the last commits, and reconcile rebuilds those from Proxmox's snapshot list.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    kwargs["pool_pre_ping"] = True
    return create_engine(url, **kwargs)


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def reason(exc: SQLAlchemyError) -> str:
    """The driver's own message when there is one (the DBAPI error), else SQLAlchemy's (the pool's)."""
    return _first_line(exc.orig if isinstance(exc, DBAPIError) else exc)


def _first_line(exc: object) -> str:
    return (str(exc).strip().splitlines() or ["unknown error"])[0][:300]
