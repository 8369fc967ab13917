"""The blessing mark travels on the snapshot's description, so it survives a database rollback."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from runtime.checkpoints.naming import describe, owned, snapname_for


def test_blessed_time_round_trips_through_the_description() -> None:
    ident = str(uuid.uuid4())
    made = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    blessed = datetime(2026, 11, 1, 1, 30, tzinfo=UTC)
    text = describe(uuid=ident, kind="scheduled", created_at=made, reason="schedule", blessed_at=blessed)
    claim = owned(snapname_for(ident), text)
    assert claim is not None
    assert claim.blessed_at == blessed
    assert claim.created_at == made


def test_unblessed_and_garbled_blessing_read_as_not_blessed() -> None:
    ident = str(uuid.uuid4())
    made = datetime(2026, 11, 1, tzinfo=UTC)
    plain = describe(uuid=ident, kind="manual", created_at=made, reason=None)
    claim = owned(snapname_for(ident), plain)
    assert claim is not None and claim.blessed_at is None
    garbled = plain + "\nhub-blessed: not-a-time"
    claim = owned(snapname_for(ident), garbled)
    assert claim is not None and claim.blessed_at is None
