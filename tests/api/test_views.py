"""JSON shapes of the read API (service/api/views.py): times go out as RFC 3339 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson

from service.api.views import customer_view, json_bytes
from tests.domain.factories import make_account
from tests.support.policy import make_policy


def test_account_times_are_written_in_utc_with_a_z_whatever_their_offset() -> None:
    at = datetime(2026, 3, 1, 14, 30, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
    for when in (at, at.astimezone(UTC), at.replace(microsecond=0)):
        account = make_account(at=when)
        body = orjson.loads(json_bytes(customer_view(account, make_policy(), when)))
        expected = when.astimezone(UTC).isoformat().replace("+00:00", "Z")
        assert expected.endswith("Z")
        for key in ("status_since", "opened_at", "last_event_at"):
            assert body[key] == expected, key
        assert body["next_transition_at"] is None
