"""What-if (`POST /v1/policy/simulate`, `relbank simulate`): stream the event store through the
pure fold of `service.domain.simulate` and compare with the accounts, all in the caller's
(read-only) transaction; and the answer's JSON shape, the same for HTTP and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.policy import Policy
from service.domain.simulate import Simulation, WhatIf
from service.storage import accounts, policies
from service.storage import events as event_store

PAGE = 5000


async def simulate(
    conn: AsyncConnection,
    policy: Policy,
    *,
    half_life_now: float | None,
    progress: Callable[[int], object] | None = None,
) -> WhatIf:
    """`half_life_now` reads the current balances when the database has not recorded the
    half-life its projections were computed under (an empty database)."""
    state = await policies.projection_state(conn)
    if state is not None:
        half_life_now = state[1]
    # After the first read, so every event of the snapshot was received before `at`.
    simulation = Simulation(policy, at=datetime.now(UTC))
    after_seq = 0
    while page := await event_store.events_after(conn, after_seq, PAGE):
        simulation.fold(page)
        after_seq = page[-1].seq
        if progress:
            progress(len(page))
    current = await accounts.load_all(conn)
    return simulation.compare(current, half_life_now=half_life_now)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def what_if_json(report: WhatIf) -> dict[str, Any]:
    return {
        "policy_version": report.policy_version,
        "at": _rfc3339(report.at),
        "events": report.events,
        "accounts": report.accounts,
        "at_risk_now": report.at_risk_now,
        "at_risk_simulated": report.at_risk_simulated,
        "to_at_risk": report.to_at_risk,
        "to_ok": report.to_ok,
        "movers": [
            {
                "customer_id": m.customer_id,
                "balance_now": m.balance_now,
                "balance_simulated": m.balance_simulated,
                "status_now": m.status_now,
                "status_simulated": m.status_simulated,
            }
            for m in report.movers
        ],
    }
