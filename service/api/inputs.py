"""What a request brings, checked before it reaches a query: 4xx problem details, never a 500."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Path, Query

from service.api.problems import Problem
from service.domain.envelope import InvalidEvent, check_customer_id, parse_time
from service.domain.identifiers import IDENTIFIER_PATTERN
from service.domain.policy import Policy
from service.storage.accounts import RankKey
from service.storage.ledger import LedgerKey

BIGINT_MAX = 2**63 - 1
CUSTOMER_ID_DOC = (
    "The customer id as ONE percent-encoded path segment: `/` travels as `%2F`, and an id that "
    "is `.` or `..` as `%2E` / `%2E%2E`."
)
# The identifier rule `check_customer_id` applies (no Cc, Cf or noncharacters), as a pattern.
CUSTOMER_ID_PATTERN = IDENTIFIER_PATTERN

# A time parameter: RFC 3339 with an offset (a `+` in it travels as %2B).
Time = Annotated[
    str | None,
    Query(
        json_schema_extra={"format": "date-time"},
        description="RFC 3339 with an offset; send a `+` as %2B.",
    ),
]


async def customer_id(
    customer_id: Annotated[
        str,
        # The pattern is documented, not enforced here: `check_customer_id` says what is wrong
        # in words rather than quoting a regular expression.
        Path(
            min_length=1,
            max_length=128,
            description=CUSTOMER_ID_DOC,
            json_schema_extra={"pattern": CUSTOMER_ID_PATTERN},
        ),
    ],
) -> str:
    """The customer id of the path, under the same rule ingest applies to `subject`."""
    return checked_customer_id(customer_id)


def checked_customer_id(value: str) -> str:
    """`value` (a decoded path segment) as a customer id, or a 422 problem saying why not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(422, "the customer id is not percent-encoded UTF-8") from None
    try:
        return check_customer_id(value)
    except InvalidEvent as exc:
        raise Problem(422, f"customer id: {exc.detail}", reason=exc.reason.value) from None


def known_segment(segment: str | None, policy: Policy) -> str | None:
    if segment is not None and segment not in policy.segments:
        known = sorted(policy.segments)
        raise Problem(
            422,
            f"segment {segment!r} is not in policy {policy.version}; known: {known}",
            known_segments=known,
        )
    return segment


def ledger_key(key: Any) -> LedgerKey:
    """A ledger cursor's key: a time PostgreSQL can hold and an entry id."""
    when, entry_id = key
    if not isinstance(entry_id, int) or not 0 <= entry_id <= BIGINT_MAX:
        raise ValueError("cursor out of range")
    return LedgerKey(parse_time(when), entry_id)


def rank_key(key: Any) -> RankKey:
    """An at-risk cursor's key: (status rank, balance, customer id)."""
    rank, balance, last_id = key
    if rank not in (-1, 0, 1) or isinstance(rank, bool):
        raise ValueError("cursor out of range")
    if not isinstance(balance, int | float) or not math.isfinite(balance):
        raise ValueError("cursor out of range")
    return int(rank), float(balance), check_customer_id(last_id)


def alert_position(after: int | None, cursor: str | None) -> int:
    """Where the alert feed goes on: `cursor=` (as every list takes) or `after=`."""
    if cursor is None:
        return after or 0
    if not (cursor.isascii() and cursor.isdigit() and int(cursor) <= BIGINT_MAX):
        raise Problem(422, "`cursor` is not a cursor this API handed out")
    if after is not None and after != int(cursor):
        raise Problem(422, "`after` and `cursor` disagree; pass one of them")
    return int(cursor)
