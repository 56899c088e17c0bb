"""CloudEvents on Kafka (the CloudEvents Kafka protocol binding): records to envelopes and back.

Structured mode: the record value is the whole event as JSON (`content-type` header optional,
`application/cloudevents+json` when present). Binary mode: attributes in `ce_*` headers,
`content-type` is `datacontenttype`, the value is `data`. A record is binary when it carries
`ce_specversion` and its content type is not a CloudEvents one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson

from service.domain.envelope import Event, InvalidEvent, Reason, decode_json, validate
from service.kafka import lenient

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
# Not worth parsing beyond this (Kafka's default message.max.bytes); the event rule is `validate`'s.
MAX_RECORD_BYTES = 1024 * 1024
_CE_PREFIX = "ce_"
Headers = list[tuple[str, bytes]]


class RecordLike(Protocol):
    """What the codec reads from an aiokafka ConsumerRecord."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that cannot be accepted: `reason` is the `relbank-error` code."""

    reason: str
    detail: str


def _is_json(content_type: str | None) -> bool:
    # CloudEvents: an absent datacontenttype means application/json.
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _text_headers(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The headers the binding reads (`ce_*`, `content-type`), as text; keys lower-cased."""
    found: dict[str, str] = {}
    for key, raw in headers:
        if not lenient.is_utf8(key):
            raise InvalidEvent(
                Reason.BAD_HEADERS, f"header key {lenient.printable(key)!r} is not UTF-8"
            )
        name = key.lower()
        if not (name.startswith(_CE_PREFIX) or name == "content-type"):
            continue
        if raw is None:
            raise InvalidEvent(Reason.BAD_HEADERS, f"header {key!r} has no value")
        if name in found:
            raise InvalidEvent(Reason.BAD_HEADERS, f"header {key!r} appears more than once")
        try:
            found[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent(Reason.BAD_HEADERS, f"header {key!r} is not UTF-8") from None
    return found


def to_envelope(record: RecordLike) -> Any:
    """The envelope a record carries; raises `InvalidEvent`. Its size is judged by `validate`."""
    headers = _text_headers(record.headers)
    content_type = headers.get("content-type")
    value = record.value
    if value is not None and len(value) > MAX_RECORD_BYTES:
        raise InvalidEvent(
            Reason.TOO_LARGE,
            f"record is {len(value)} bytes; relbank reads up to {MAX_RECORD_BYTES}",
        )
    binary = "ce_specversion" in headers and not (
        content_type is not None and content_type.lower().startswith("application/cloudevents")
    )
    if not binary:
        if value is None:
            raise InvalidEvent(Reason.NOT_JSON, "the record has no value")
        return decode_json(value)
    envelope: dict[str, Any] = {
        name[len(_CE_PREFIX) :]: text for name, text in headers.items() if name != "content-type"
    }
    if content_type is not None:
        envelope["datacontenttype"] = content_type
    if value:  # an empty or null value is an event without data
        if not _is_json(content_type):
            raise InvalidEvent(
                Reason.BAD_DATA,
                f"data of content type {content_type!r} is not JSON; relbank needs a JSON object",
            )
        envelope["data"] = decode_json(value, what="data")
    return envelope


def decode(
    record: RecordLike, *, received_at: datetime, max_future_skew: timedelta
) -> Event | Rejection:
    """A record as a valid event, or why it is not one."""
    try:
        return validate(
            to_envelope(record), received_at=received_at, max_future_skew=max_future_skew
        )
    except InvalidEvent as exc:
        return Rejection(exc.reason.value, exc.detail)


def _key(event: Mapping[str, Any]) -> bytes | None:
    subject = event.get("subject")
    return subject.encode() if isinstance(subject, str) else None


def encode_structured(event: Mapping[str, Any]) -> tuple[bytes | None, bytes, Headers]:
    """(key, value, headers) of a structured-mode record, keyed by customer id."""
    return (
        _key(event),
        orjson.dumps(event),
        [("content-type", STRUCTURED_CONTENT_TYPE.encode())],
    )


def encode_binary(event: Mapping[str, Any]) -> tuple[bytes | None, bytes | None, Headers]:
    """(key, value, headers) of a binary-mode record: attributes as `ce_*` headers, `data` as
    the value (JSON)."""
    headers: Headers = []
    for name, value in event.items():
        if name in ("data", "datacontenttype") or value is None:
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        headers.append((f"{_CE_PREFIX}{name}", text.encode()))
    data = event.get("data")
    content_type = event.get("datacontenttype")
    if isinstance(content_type, str):
        headers.append(("content-type", content_type.encode()))
    value = orjson.dumps(data) if data is not None else None
    return _key(event), value, headers
