"""An event's content by meaning (README): the hash that tells a duplicate from a conflict.

Two envelopes mean the same when they differ only in how they are written: member order, `time`
spelled in another offset or precision (`...Z`, `...+00:00`, `...T01:00:00+01:00`), a number
written another way (`1`, `1.0`, `1e0`), an attribute set to null instead of left out, or the
binary-mode Kafka forms (every extension a string, the default content type named).
The hash is taken over a basis that spells each of those one way. Most envelopes already do, and
then the basis is the stored encoding itself: nothing is encoded a second time.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import orjson

_CORE = frozenset({"specversion", "id", "source", "type", "subject", "time", "data"})
# `time` as the basis spells it: UTC, `Z`, the fraction without trailing zeros (none if zero).
_BASIS_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{0,5}[1-9])?Z", re.ASCII)
_INT_RANGE = (-(2**63), 2**64)  # what orjson encodes as an integer


def time_text(instant: datetime) -> str:
    """`instant` spelled the basis way."""
    text = instant.astimezone(UTC).isoformat()[: -len("+00:00")]
    if instant.microsecond:
        text = text.rstrip("0")
    return text + "Z"


def _by_value(value: Any) -> Any:
    """`value` with every float that holds an integer written as that integer."""
    if type(value) is float:
        if value.is_integer() and _INT_RANGE[0] <= value < _INT_RANGE[1]:
            return int(value)
        return value
    if type(value) is dict:
        return {name: _by_value(item) for name, item in value.items()}
    if type(value) is list:
        return [_by_value(item) for item in value]
    return value


def _shape(envelope: dict[str, Any]) -> tuple[bool, bool]:
    """(every member but `data` is a string and `data` is not null, a float holds an integer)."""
    strings = True
    stack = []
    for name, value in envelope.items():
        if type(value) is not str:
            strings = strings and name == "data" and value is not None
            stack.append(value)
    while stack:  # a loop, not recursion: this runs for every event
        value = stack.pop()
        kind = type(value)
        if kind is float:
            if value.is_integer():
                return strings, True
        elif kind is dict:
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
    return strings, False


def _attribute_text(value: Any) -> Any:
    """An extension as binary mode carries it: a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _default_content_type(value: Any) -> bool:
    return isinstance(value, str) and value.split(";")[0].strip().lower() == "application/json"


def content_hash(envelope: dict[str, Any], encoded: bytes, instant: datetime | None) -> bytes:
    """SHA-256 of the envelope's meaning.

    `encoded` is the envelope's compact sorted-key encoding; `instant` is `time` parsed (None
    when it does not parse: the text is then taken as it is).
    """
    time = envelope.get("time")
    strings, integral = _shape(envelope)
    if (
        strings
        and not integral
        and "datacontenttype" not in envelope
        and (instant is None or (isinstance(time, str) and _BASIS_TIME.fullmatch(time)))
    ):
        return hashlib.sha256(encoded).digest()
    basis: dict[str, Any] = {}
    for name, value in envelope.items():
        if value is None or (name == "datacontenttype" and _default_content_type(value)):
            continue
        if integral:
            value = _by_value(value)
        if name == "time" and instant is not None:
            value = time_text(instant)
        elif name not in _CORE:
            value = _attribute_text(value)
        basis[name] = value
    return hashlib.sha256(orjson.dumps(basis, option=orjson.OPT_SORT_KEYS)).digest()
