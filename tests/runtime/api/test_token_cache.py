"""The API's memory of verified tokens (``runtime.api.deps.VerifiedTokens``): a revocation takes
effect within its bound, and nothing but a success is ever remembered."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.api.deps import VERIFIED_FOR, VerifiedTokens
from runtime.db import Database
from runtime.tokens import TokenStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    db.upgrade()
    return TokenStore(db)


def test_a_revoked_token_is_refused_once_the_bound_has_passed(store: TokenStore) -> None:
    clock = Clock()
    tokens = VerifiedTokens(store, clock=clock)
    token = store.create(name="ci", actor="test")["token"]
    assert tokens.recent(token) is None  # nothing remembered before the database said yes
    assert tokens.verify(token) == "ci"
    assert tokens.recent(token) == "ci"

    store.revoke(name="ci", actor="test")  # as `hubctl token revoke` does, from another process
    clock.now += VERIFIED_FOR / 2
    assert tokens.recent(token) == "ci"  # within the bound: still the remembered answer
    clock.now += VERIFIED_FOR / 2
    assert tokens.recent(token) is None  # past it: the database is asked again...
    assert tokens.verify(token) is None  # ...and refuses
    assert tokens.recent(token) is None


def test_unknown_and_wrong_tokens_are_never_remembered(store: TokenStore) -> None:
    tokens = VerifiedTokens(store, clock=Clock())
    token = store.create(name="ci", actor="test")["token"]
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    for presented in (wrong, "hub_0123456789abcdef_" + "x" * 43, "not a token"):
        assert tokens.verify(presented) is None
        assert tokens.recent(presented) is None
    assert tokens.recent(token) is None  # a near miss does not vouch for the real one either
