"""`relbank simulate --policy FILE`: the what-if of `POST /v1/policy/simulate`, printed as a
table (or, with `--json`, as the API answers it), with a progress bar on standard error."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import IO

import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from tqdm import tqdm

from service.domain.policy import Policy, PolicyError, load_policy
from service.domain.simulate import Mover, WhatIf
from service.errors import CommandFailed, summary
from service.logs import expected
from service.runtime import Runtime
from service.settings import Settings
from service.simulate import what_if_json
from service.storage.db import sqlstate

_ID_WIDTH = 40


def simulate(
    settings: Settings,
    active: Policy,
    policy_file: Path,
    *,
    as_json: bool = False,
    out: IO[str] | None = None,
) -> WhatIf:
    """Simulate the policy in `policy_file` against the database of `settings` and print it."""
    try:
        candidate = load_policy(policy_file)
    except PolicyError as exc:
        raise CommandFailed(f"bad policy: {exc}", code=2) from None
    try:
        report = asyncio.run(_run(settings, active, candidate))
    except (OSError, TimeoutError, DBAPIError) as exc:
        # One line, naming the setting to fix; the traceback would only hide it.
        if sqlstate(exc) == "42P01":  # undefined table
            missing = "the database has no relbank tables: run `relbank migrate`"
            raise CommandFailed(missing) from None
        if not expected(exc):
            raise
        url = make_url(settings.database_url).render_as_string(hide_password=True)
        raise CommandFailed(
            f"cannot read the database at RELBANK_DATABASE_URL={url}: {summary(exc)}"
        ) from None
    out = out or sys.stdout
    if as_json:
        out.write(orjson.dumps(what_if_json(report), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write("\n".join(table(report)) + "\n")
    return report


async def _run(settings: Settings, active: Policy, candidate: Policy) -> WhatIf:
    rt = Runtime.build(settings.model_copy(update={"database_pool_size": 1}), active)
    try:
        total = await rt.app.event_count()
        with tqdm(total=total, unit="ev", desc="simulate", file=sys.stderr) as bar:
            return await rt.app.simulate(candidate, progress=bar.update)
    finally:
        await rt.close()


def _id(customer_id: str) -> str:
    if len(customer_id) <= _ID_WIDTH:
        return customer_id
    return customer_id[: _ID_WIDTH - 1] + "…"


def _status(mover: Mover) -> str:
    if mover.status_now == mover.status_simulated:
        return mover.status_now
    return f"{mover.status_now} -> {mover.status_simulated}"


def table(report: WhatIf) -> list[str]:
    """The figures, then the movers, for people."""
    at = report.at.isoformat(timespec="seconds").replace("+00:00", "Z")
    ok_now = report.accounts - report.at_risk_now
    ok_simulated = report.accounts - report.at_risk_simulated
    lines = [
        f"policy {report.policy_version}: {report.events} events replayed, "
        f"{report.accounts} accounts, balances at {at}",
        "",
        f"{'':<10}{'now':>10}{'simulated':>11}",
        f"{'at risk':<10}{report.at_risk_now:>10}{report.at_risk_simulated:>11}",
        f"{'ok':<10}{ok_now:>10}{ok_simulated:>11}",
        "",
        f"ok -> at_risk: {report.to_at_risk}    at_risk -> ok: {report.to_ok}",
        "",
    ]
    if not report.movers:
        return [*lines, "no balance changes"]
    width = max(len("customer"), *(len(_id(m.customer_id)) for m in report.movers))
    lines += [
        f"{len(report.movers)} largest balance changes:",
        f"{'customer':<{width}}  {'now':>12}  {'simulated':>12}  {'change':>12}  status",
    ]
    lines += [
        f"{_id(m.customer_id):<{width}}  {m.balance_now:>12.2f}  {m.balance_simulated:>12.2f}  "
        f"{m.change:>+12.2f}  {_status(m)}"
        for m in report.movers
    ]
    return lines
