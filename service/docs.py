"""Reference tables the README carries, generated from the code so that they cannot drift:
the configuration variables, the default policy's catalogue and the rejection reason codes.

`python -m service.docs README.md` (or `make docs`) rewrites each between its markers (a test
fails when one is stale); without an argument it prints them.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Literal

from service.domain.envelope import (
    EARLIEST_TIME,
    LATEST_TIME,
    MAX_EVENT_BYTES,
    MAX_MAGNITUDE,
    RESERVED_SOURCE,
    Reason,
)
from service.domain.policy import Band, Moment, Policy, load_policy
from service.settings import (
    AS_SECONDS,
    AS_TIMEDELTA,
    READ_ELSEWHERE,
    Settings,
    format_duration,
)

POLICY_START = "<!-- policy-table:start -->"
POLICY_END = "<!-- policy-table:end -->"
REASONS_START = "<!-- reasons-table:start -->"
REASONS_END = "<!-- reasons-table:end -->"

REASONS: dict[Reason, str] = {
    Reason.NOT_JSON: "The body, a Kafka record's value or binary-mode `data` is not JSON, or a "
    "JSON object in it names the same member twice; a structured-mode record with no value.",
    Reason.NOT_OBJECT: "The event (or an item of a batch) is not a JSON object.",
    Reason.TOO_LARGE: f"The event is over {MAX_EVENT_BYTES // 1024} KiB encoded compactly; on "
    "Kafka also a record value over 1 MiB.",
    Reason.MISSING_ATTRIBUTE: "One of `specversion`, `id`, `source`, `type`, `subject`, `time` "
    "is missing or null.",
    Reason.BAD_SPECVERSION: '`specversion` is not `"1.0"`.',
    Reason.BAD_ATTRIBUTE: "`id`, `source` or `type` is not a string of the allowed length or "
    "holds a forbidden character; `datacontenttype` or `dataschema` is not a string.",
    Reason.BAD_SUBJECT: "The customer id (`subject`, or an id in a path) is not a string of "
    "1-128 characters or holds a forbidden character.",
    Reason.BAD_TIME: "`time` is not RFC 3339 with an offset, not a real date, or outside "
    f"{EARLIEST_TIME.date().isoformat()} to {LATEST_TIME.date().isoformat()} (UTC).",
    Reason.FUTURE_TIME: "`time` is more than `RELBANK_MAX_FUTURE_SKEW` ahead of the server clock.",
    Reason.BAD_DATA: "`data` is not an object; binary-mode `data` whose content type is not "
    "JSON; a NUL character (U+0000) anywhere; JSON that cannot be stored (nested deeper than "
    "254 levels, an integer beyond 64 bits).",
    Reason.BAD_MAGNITUDE: f"`data.magnitude` is not a finite number from 0 to {MAX_MAGNITUDE:g}.",
    Reason.BAD_HEADERS: "Kafka only: a header key that is not UTF-8, or a `ce_*` or "
    "`content-type` header with no value, not UTF-8, or given twice.",
    Reason.RESERVED_SOURCE: f"`source` is `{RESERVED_SOURCE}`, which is relbank's own "
    "(segment changes, opening entries).",
    Reason.CONFLICT: "The same `(source, id)` was received before with other content (`409` on "
    "HTTP); nothing changes.",
}


TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"


def settings_table() -> str:
    """The README's configuration table, generated from the fields of `Settings`."""
    rows = ["| variable | default | description |", "|---|---|---|"]
    for variable, name in Settings.variables().items():
        field = Settings.model_fields[name]
        default = field.default
        description = field.description or ""
        annotation = field.annotation
        members = (
            (annotation,)
            if typing.get_origin(annotation) is Literal
            else (typing.get_args(annotation))
        )
        if values := [
            v for m in members if typing.get_origin(m) is Literal for v in typing.get_args(m)
        ]:
            description += " One of " + ", ".join(f"`{v}`" for v in values) + "."
        if AS_SECONDS in field.metadata or AS_TIMEDELTA in field.metadata:
            seconds = default.total_seconds() if isinstance(default, timedelta) else default
            default = format_duration(seconds)
            description += " A duration: `300s`, `5m`, `2h`, `1d`, ISO 8601 or seconds."
        shown = "unset" if default is None else f"`{default}`"
        description = description.replace("|", "\\|")
        rows.append(f"| `{variable}` | {shown} | {description} |")
    others = "\n".join(f"- `{name}`: {text}" for name, text in READ_ELSEWHERE.items())
    return (
        "\n".join(rows)
        + "\n\nAny other `RELBANK_*` variable stops start-up (a typo must not fall back to a "
        "default). These are read elsewhere and allowed:\n\n" + others + "\n"
    )


def _number(value: float) -> str:
    return f"{value:g}"


def _weight(value: float) -> str:
    return f"{value:+g}" if value else "0"


def _bands(field: str, bands: list[Band]) -> str:
    shown = [
        f"{_number(b.min)}"
        + ("" if b.min == b.max else f"–{_number(b.max)}")
        + f" → {_weight(b.weight)}"
        for b in bands
    ]
    return f"by `data.{field}`: " + ", ".join(shown)


def _moment_weight(moment: Moment) -> str:
    if moment.weight is not None:
        return _weight(moment.weight)
    assert moment.field is not None
    assert moment.bands is not None
    return _bands(moment.field, moment.bands)


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ").strip()


def policy_table(policy: Policy | None = None) -> str:
    """The catalogue of a policy (the shipped default when None): moments, then segments."""
    policy = policy or load_policy()
    t = policy.thresholds
    half_life = (
        "no decay"
        if policy.half_life_days is None
        else f"half-life {_number(policy.half_life_days)} days"
    )
    lines = [
        f"Policy `{policy.version}`: {half_life}, "
        f"opening balance {_number(policy.opening_balance)}, "
        f"at risk below {_number(t.at_risk_below)}, "
        f"recovered at or above {_number(t.recover_at_or_above)}.",
        "",
        "| moment type | pillar | weight |",
        "|---|---|---|",
        *(
            f"| `{name}` | {_cell(m.pillar)} | {_moment_weight(m)} |"
            for name, m in policy.moments.items()
        ),
    ]
    if policy.segments:
        lines += [
            "",
            "| segment | weight multiplier | at risk below | recovered at or above | what |",
            "|---|---|---|---|---|",
        ]
        for name, segment in policy.segments.items():
            own = segment.thresholds or t
            inherited = "" if segment.thresholds else " (policy's)"
            lines.append(
                f"| `{name}` | {_number(segment.weight_multiplier)} "
                f"| {_number(own.at_risk_below)}{inherited} "
                f"| {_number(own.recover_at_or_above)}{inherited} "
                f"| {_cell(segment.description)} |"
            )
    return "\n".join(lines) + "\n"


def reasons_table() -> str:
    """Every rejection reason code and when it is given."""
    rows = ["| reason | when |", "|---|---|"]
    rows += [f"| `{reason.value}` | {_cell(REASONS[reason])} |" for reason in Reason]
    return "\n".join(rows) + "\n"


# name → (start marker, end marker, generator)
SECTIONS: dict[str, tuple[str, str, Callable[[], str]]] = {
    "settings": (TABLE_START, TABLE_END, settings_table),
    "policy": (POLICY_START, POLICY_END, policy_table),
    "reasons": (REASONS_START, REASONS_END, reasons_table),
}


def replace_between(text: str, start: str, end: str, body: str) -> str:
    """`text` with what lies between the markers `start` and `end` replaced by `body`."""
    head, found_start, rest = text.partition(start)
    _, found_end, tail = rest.partition(end)
    if not (found_start and found_end):
        raise ValueError(f"no {start} ... {end} section")
    return f"{head}{start}\n{body}{end}{tail}"


def write_tables(readme: Path) -> bool:
    """Regenerate every table of `SECTIONS` in `readme`; True when that changed it."""
    text = readme.read_text(encoding="utf-8")
    updated = text
    for start, end, generate in SECTIONS.values():
        updated = replace_between(updated, start, end, generate())
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    return updated != text


def main(argv: list[str]) -> None:
    """`[README.md]`: rewrite the tables in that file, or print them."""
    if argv:
        print("updated" if write_tables(Path(argv[0])) else "up to date", argv[0])
    else:
        print(*(generate() for _, _, generate in SECTIONS.values()), sep="\n", end="")


if __name__ == "__main__":
    main(sys.argv[1:])
