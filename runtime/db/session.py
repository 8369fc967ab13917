"""Engine and session factory, and the migration entry points (Alembic)."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from runtime.errors import DatabaseError, SettingsError
from runtime.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")


class Database:
    """One engine per process; sessions are short and explicit (``with db.session() as s``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = _make_engine(url)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise SettingsError("HUB_DATABASE_URL", f"cannot use {_safe_url(url)}: {exc}") from None
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._ready = False

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
        except OperationalError as exc:
            raise DatabaseError(f"database error ({_safe_url(self.url)}): {_first_line(exc.orig)}") from None

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self) -> tuple[str | None, str]:
        """Apply every pending migration; returns (revision before, revision after). Idempotent."""
        before = self.current_revision()
        try:
            command.upgrade(self.alembic_config(), "head")
        except OperationalError as exc:
            raise DatabaseError(f"cannot migrate {_safe_url(self.url)}: {_first_line(exc.orig)}") from None
        return before, self.head_revision()

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except OperationalError as exc:
            raise DatabaseError(f"cannot reach {_safe_url(self.url)}: {_first_line(exc.orig)}") from None

    def head_revision(self) -> str:
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


def _make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        # Several hubctl processes share the file: wait for each other's write locks instead of
        # failing at once, and let readers proceed beside a writer.
        kwargs["connect_args"] = {"timeout": 30}
        engine = create_engine(url, **kwargs)

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


def _first_line(exc: object) -> str:
    return (str(exc).strip().splitlines() or ["unknown error"])[0][:300]
