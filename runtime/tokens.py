"""API bearer tokens: ``hub_<id>_<secret>``, shown once at creation, stored as SHA-256 of the secret.

Lookup is by the public id; the secret's hash is compared in constant time (``hmac.compare_digest``),
so neither a timing difference nor a database read reveals anything about a valid secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from runtime import audit
from runtime.db import ApiToken, Database
from runtime.errors import NotFoundError, UsageError

LAST_USED_RESOLUTION = timedelta(minutes=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKEN = re.compile(r"^hub_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, *, name: str | None, actor: str) -> dict[str, Any]:
        name = name or f"token-{secrets.token_hex(3)}"
        if not _NAME.match(name):
            raise UsageError("--name: letters, digits, '.', '_' and '-', at most 64 characters")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        try:
            with self.db.session() as s:
                s.add(
                    ApiToken(
                        id=token_id, name=name, secret_sha256=_digest(secret), created_at=datetime.now(UTC)
                    )
                )
                s.flush()
                audit.record(
                    s, actor=actor, action="token.create", target=f"token/{name}", outcome="completed"
                )
        except IntegrityError:
            raise UsageError(f"--name: a token named {name!r} already exists") from None
        return {"name": name, "token": f"hub_{token_id}_{secret}"}

    def list(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [t.to_public() for t in s.scalars(select(ApiToken).order_by(ApiToken.created_at))]

    def revoke(self, *, name: str, actor: str) -> dict[str, Any]:
        with self.db.session() as s:
            token = s.scalar(select(ApiToken).where(ApiToken.name == name))
            if token is None:
                raise NotFoundError(f"no token named {name!r}")
            if token.revoked_at is None:
                token.revoked_at = datetime.now(UTC)
                audit.record(
                    s, actor=actor, action="token.revoke", target=f"token/{name}", outcome="completed"
                )
            return token.to_public()

    def verify(self, presented: str) -> str | None:
        """The token's name if ``presented`` is a valid, unrevoked token; None otherwise."""
        match = _TOKEN.match(presented)
        if not match:
            return None
        token_id, secret = match.groups()
        with self.db.session() as s:
            token = s.get(ApiToken, token_id)
            expected = token.secret_sha256 if token is not None else _digest("not-a-token")
            valid = hmac.compare_digest(expected, _digest(secret))
            if token is None or not valid or token.revoked_at is not None:
                return None
            now = datetime.now(UTC)
            # Recorded at minute resolution: a write per request would serialise every API call
            # on the database's write lock for a timestamp nobody reads to the second.
            if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
                token.last_used_at = now
            return token.name
