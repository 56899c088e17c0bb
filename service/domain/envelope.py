"""CloudEvents 1.0 envelope: the rules of README, each broken rule with its own reason code.

Pure: no I/O. Decoding bytes, validating, and computing the content hash used for conflict
detection all live here so HTTP and Kafka share one definition of "valid".
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.domain import jsontext, meaning
from service.domain.identifiers import IDENTIFIER_PATTERN, forbidden_character

MAX_EVENT_BYTES = 64 * 1024
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 30, tzinfo=UTC)
MAX_MAGNITUDE = 1000.0
RESERVED_SOURCE = "relbank"


class Reason(StrEnum):
    """Reason codes for a rejected event (HTTP `reason`, Kafka `relbank-error` header)."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    TOO_LARGE = "too_large"
    MISSING_ATTRIBUTE = "missing_attribute"
    BAD_SPECVERSION = "bad_specversion"
    BAD_ATTRIBUTE = "bad_attribute"
    BAD_SUBJECT = "bad_subject"
    BAD_TIME = "bad_time"
    FUTURE_TIME = "future_time"
    BAD_DATA = "bad_data"
    BAD_MAGNITUDE = "bad_magnitude"
    BAD_HEADERS = "bad_headers"
    RESERVED_SOURCE = "reserved_source"
    CONFLICT = "conflict"


class InvalidEvent(Exception):
    """An envelope that breaks a rule; `reason` is the code, `detail` says what and where."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=IDENTIFIER_PATTERN)]
_Type = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)]


class CloudEvent(BaseModel):
    """The interaction-event envelope; `schemas/interaction-event.schema.json` comes from it."""

    model_config = ConfigDict(
        extra="allow",
        title="relbank interaction event (CloudEvents 1.0)",
        json_schema_extra={
            "description": "A moment that matters for a customer, as a CloudEvents 1.0 structured "
            "event. Extension attributes are accepted and kept."
        },
    )

    specversion: Annotated[str, Field(pattern=r"^1\.0$", description='Always "1.0".')]
    id: Annotated[_Id, Field(description="Unique within `source`.")]
    source: Annotated[_Id, Field(description="The producing system, e.g. `zendesk`.")]
    type: Annotated[_Type, Field(description="The moment type, looked up in the policy.")]
    subject: Annotated[_Type, Field(description="The customer id.")]
    time: Annotated[
        datetime,
        Field(description="RFC 3339 with offset: when the moment happened."),
    ]
    data: Annotated[
        dict[str, Any] | None,
        Field(
            default=None,
            description="Optional object; `magnitude` (0..1000, default 1) scales the weight.",
            json_schema_extra={
                "properties": {
                    "magnitude": {"type": "number", "minimum": 0, "maximum": MAX_MAGNITUDE}
                }
            },
        ),
    ]
    datacontenttype: str | None = None
    dataschema: str | None = None


# A NamedTuple: see `ledger.StoredEvent`.
class Event(NamedTuple):
    """A valid interaction event, ready to weigh and store."""

    source: str
    id: str
    type: str
    customer_id: str
    time: datetime
    effective_at: datetime
    received_at: datetime
    magnitude: float
    data: dict[str, Any] | None
    envelope: dict[str, Any]
    encoded: bytes
    content_hash: bytes


_REQUIRED = ("specversion", "id", "source", "type", "subject", "time")
_STRING_LIMITS = {"id": 256, "source": 256, "type": 128, "subject": 128}


def decode_json(raw: bytes, *, what: str = "body") -> Any:
    """Parse JSON text; not JSON, or an object naming a member twice, is `not_json`."""
    try:
        return jsontext.loads(raw)
    except (orjson.JSONDecodeError, jsontext.DuplicateMember) as exc:
        raise InvalidEvent(Reason.NOT_JSON, f"{what} is not valid JSON: {exc}") from None


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def parse_time(value: Any) -> datetime:
    """RFC 3339 with a mandatory offset (`Z` or `±hh:mm`)."""
    if not isinstance(value, str):
        raise InvalidEvent(Reason.BAD_TIME, "`time` must be an RFC 3339 string")
    if not _RFC3339.fullmatch(value):
        raise InvalidEvent(Reason.BAD_TIME, f"`time` {value!r} is not RFC 3339 with an offset")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        utc = parsed.astimezone(UTC)
    except ValueError:
        raise InvalidEvent(Reason.BAD_TIME, f"`time` {value!r} is not a valid date") from None
    except OverflowError:
        raise InvalidEvent(Reason.BAD_TIME, f"`time` {value!r} is out of range") from None
    # PostgreSQL (through asyncpg) stores 0001-01-01T00:00Z as -infinity and cannot take a UTC
    # year outside 1..9999: keep every accepted time strictly inside.
    if not EARLIEST_TIME <= utc <= LATEST_TIME:
        raise InvalidEvent(
            Reason.BAD_TIME,
            f"`time` {value!r} is outside {EARLIEST_TIME.isoformat()}..{LATEST_TIME.isoformat()}",
        )
    return parsed


def canonical(envelope: dict[str, Any]) -> bytes:
    """The envelope as stored: compact JSON with sorted keys, so equal content encodes equally."""
    try:
        return orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        # Deeper than 254 levels, or an integer beyond 64 bits: JSON we cannot store faithfully.
        raise InvalidEvent(Reason.BAD_DATA, f"event cannot be encoded as JSON: {exc}") from None


def content_hash(envelope: dict[str, Any], encoded: bytes | None = None) -> bytes:
    """Two events with the same (source, id) are duplicates when this matches, else a conflict.
    `encoded` is `canonical(envelope)` when the caller has it already."""
    try:
        instant = parse_time(envelope.get("time"))
    except InvalidEvent:
        instant = None
    return meaning.content_hash(envelope, encoded or canonical(envelope), instant)


def _check_identifier(value: Any, name: str) -> str:
    reason = Reason.BAD_SUBJECT if name == "subject" else Reason.BAD_ATTRIBUTE
    limit = _STRING_LIMITS[name]
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise InvalidEvent(reason, f"`{name}` must be a string of 1-{limit} characters")
    if found := forbidden_character(value):
        raise InvalidEvent(reason, f"`{name}` holds a control, format or noncharacter ({found})")
    return value


def check_customer_id(subject: Any) -> str:
    """The rule for a customer id (an event's `subject`, or an id in a path); raises
    `InvalidEvent` with reason `bad_subject`."""
    return _check_identifier(subject, "subject")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _magnitude(data: dict[str, Any] | None) -> float:
    if data is None or "magnitude" not in data:
        return 1.0
    value = data["magnitude"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(Reason.BAD_MAGNITUDE, "`data.magnitude` must be a number")
    try:
        magnitude = float(value)
    except OverflowError:
        magnitude = math.inf
    if not math.isfinite(magnitude) or not 0 <= magnitude <= MAX_MAGNITUDE:
        raise InvalidEvent(
            Reason.BAD_MAGNITUDE, f"`data.magnitude` must be between 0 and {MAX_MAGNITUDE:g}"
        )
    return magnitude


def validate(
    envelope: Any,
    *,
    received_at: datetime,
    max_future_skew: timedelta,
    internal: bool = False,
) -> Event:
    """Check one decoded envelope against every rule of README.

    The size is that of the stored encoding (compact, sorted keys), so one event measures the
    same on every path, however it was padded or batched.
    `internal` admits the reserved source `relbank` (segment changes made through the API);
    producers may not write events in relbank's name.
    """
    if not isinstance(envelope, dict):
        raise InvalidEvent(Reason.NOT_OBJECT, "an event must be a JSON object")
    encoded = canonical(envelope)
    if len(encoded) > MAX_EVENT_BYTES:
        raise InvalidEvent(
            Reason.TOO_LARGE,
            f"event is {len(encoded)} bytes encoded compactly; the limit is {MAX_EVENT_BYTES}",
        )
    missing = [name for name in _REQUIRED if envelope.get(name) is None]
    if missing:
        raise InvalidEvent(
            Reason.MISSING_ATTRIBUTE, f"missing required attribute(s): {', '.join(missing)}"
        )
    if envelope["specversion"] != "1.0":
        raise InvalidEvent(Reason.BAD_SPECVERSION, '`specversion` must be "1.0"')
    source, event_id, type_ = (_check_identifier(envelope[n], n) for n in ("source", "id", "type"))
    if source == RESERVED_SOURCE and not internal:
        raise InvalidEvent(
            Reason.RESERVED_SOURCE, f"`source` {RESERVED_SOURCE!r} is reserved for relbank itself"
        )
    subject = check_customer_id(envelope["subject"])
    time = parse_time(envelope["time"])
    if time - received_at > max_future_skew:
        raise InvalidEvent(
            Reason.FUTURE_TIME,
            f"`time` {envelope['time']} is more than {max_future_skew} ahead of the server clock",
        )
    data = envelope.get("data")
    if data is not None and not isinstance(data, dict):
        raise InvalidEvent(Reason.BAD_DATA, "`data` must be a JSON object")
    for name in ("datacontenttype", "dataschema"):
        if name in envelope and envelope[name] is not None and not isinstance(envelope[name], str):
            raise InvalidEvent(Reason.BAD_ATTRIBUTE, f"`{name}` must be a string")
    magnitude = _magnitude(data)
    # PostgreSQL cannot store U+0000 in text or jsonb (checked last, so a NUL in an attribute
    # gets that attribute's reason); the escape only shows up where one may be.
    if b"\\u0000" in encoded and _has_nul(envelope):
        raise InvalidEvent(
            Reason.BAD_DATA, "the event contains a NUL character (U+0000), which cannot be stored"
        )
    return Event(
        source=source,
        id=event_id,
        type=type_,
        customer_id=subject,
        time=time,
        effective_at=min(time, received_at),
        received_at=received_at,
        magnitude=magnitude,
        data=data,
        envelope=envelope,
        encoded=encoded,
        content_hash=meaning.content_hash(envelope, encoded, time),
    )


def decode_batch(raw: bytes) -> list[Any]:
    """A JSON array of events (1..n); each item is validated on its own afterwards."""
    body = decode_json(raw)
    if not isinstance(body, list):
        raise InvalidEvent(Reason.NOT_JSON, "a batch must be a JSON array")
    return body
