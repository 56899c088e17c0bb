"""JSON text to Python values, refusing an object that names the same member twice (README).

orjson parses fast but silently keeps the last of two members with the same name, so a body with
`"subject":"a","subject":"b"` would book to `b`. Rather than parse a second time, the check counts:
every member of every object costs exactly one `:` outside strings, and a member lost to a
duplicate takes its `:` (and those in its strings) with it. orjson writes `:` as it is, so
re-encoding what was parsed and counting its colons gives the count without the lost members.
Only when the counts differ (or the value cannot be re-encoded) does a slower exact check run.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# A JSON string token; matched from the first quote on, valid JSON is split into its strings.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class DuplicateMember(ValueError):
    """An object in the text names a member twice."""

    def __init__(self, name: str | None) -> None:
        where = f"`{name}`" if name is not None else "a member"
        super().__init__(f"an object names {where} more than once")
        self.name = name


def loads(raw: bytes) -> Any:
    """Parse `raw`; raises `orjson.JSONDecodeError` or `DuplicateMember`."""
    value = orjson.loads(raw)
    colons = raw.count(b":")
    if not colons:
        return value
    if b"\\" in raw:  # one byte: a memchr, where "\\u" would be a slower substring search
        # An escaped colon decodes to one; counting `\\u003a` too may overcount (an escaped
        # backslash before "u003a"), which only sends the text to the exact check.
        colons += raw.count(b"\\u003a") + raw.count(b"\\u003A")
    try:
        if orjson.dumps(value).count(b":") == colons:
            return value
    except orjson.JSONEncodeError:
        pass  # nested deeper than orjson writes, or a lone surrogate: count exactly instead
    if _STRING.sub(b"", raw).count(b":") != _members(value):
        raise DuplicateMember(_first_duplicate(raw))
    return value


def _members(value: Any) -> int:
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


class _Found(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _reject_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Found(name)
            seen.add(name)
    return members


def _first_duplicate(raw: bytes) -> str | None:
    """The repeated name, for the message (None when the text nests too deep to say)."""
    try:
        json.loads(raw, object_pairs_hook=_reject_repeats)
    except _Found as found:
        return found.name
    except (RecursionError, ValueError):
        pass
    return None
