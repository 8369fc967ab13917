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
# The name the token hubinfra generates at `pulumi up` is stored under (settings api_token_sha256).
BOOTSTRAP_TOKEN_NAME = "bootstrap"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKEN = re.compile(r"^hub_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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

    def ensure(self, *, name: str, sha256: str, actor: str) -> dict[str, Any]:
        """Store a token whose secret's SHA-256 is ``sha256`` (made elsewhere, e.g. by hubinfra at
        ``pulumi up``), idempotently; the token's id is ``sha256[:16]`` (hubinfra/api_token.py), so the
        holder's ``hub_<id>_<secret>`` verifies. Called at every start with the same value:

        - the row exists (same id and hash): nothing changes, a revoked token stays revoked (an
          operator's revocation wins; a new seed gives a new token);
        - another row holds ``name`` (the seed was rotated): it is revoked and renamed
          ``<name>.<its id>``, then the new token is stored under ``name``.
        """
        if not _NAME.match(name):
            raise UsageError("name: letters, digits, '.', '_' and '-', at most 64 characters")
        if not _SHA256.match(sha256):
            raise UsageError("sha256: expected 64 lowercase hex digits")
        token_id = sha256[:16]
        for attempt in range(2):
            try:
                with self.db.session() as s:
                    existing = s.get(ApiToken, token_id)
                    if existing is not None:
                        if not hmac.compare_digest(existing.secret_sha256, sha256):
                            raise UsageError(f"token id {token_id} is taken by another token")
                        return existing.to_public()
                    now = datetime.now(UTC)
                    previous = s.scalar(select(ApiToken).where(ApiToken.name == name))
                    if previous is not None:
                        previous.name = f"{name}.{previous.id}"[:64]
                        if previous.revoked_at is None:
                            previous.revoked_at = now
                            audit.record(
                                s,
                                actor=actor,
                                action="token.revoke",
                                target=f"token/{name}",
                                outcome="completed",
                            )
                        s.flush()
                    token = ApiToken(id=token_id, name=name, secret_sha256=sha256, created_at=now)
                    s.add(token)
                    s.flush()
                    audit.record(
                        s, actor=actor, action="token.create", target=f"token/{name}", outcome="completed"
                    )
                    return token.to_public()
            except IntegrityError:
                # Another process stored it at the same moment: the second pass finds its row.
                if attempt:
                    raise
        raise AssertionError("unreachable")

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
