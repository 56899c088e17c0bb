"""Identifiers hold no control, format or noncharacters (README)."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.envelope import InvalidEvent, Reason, check_customer_id
from service.domain.identifiers import (
    FORBIDDEN_RANGES,
    IDENTIFIER_PATTERN,
    UNICODE_VERSION,
    forbidden_character,
)
from tests.domain.factories import check
from tests.support.events import make_envelope


def forbidden_by_unicode(ch: str) -> bool:
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Cc", "Cf") or 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE
    )


TABLE = frozenset(cp for first, last in FORBIDDEN_RANGES for cp in range(first, last + 1))


def test_the_table_is_unicodes_cc_cf_and_noncharacters() -> None:
    table = TABLE
    running = {cp for cp in range(0x110000) if forbidden_by_unicode(chr(cp))}
    if unicodedata.unidata_version == UNICODE_VERSION:
        assert table == running
    else:  # a newer Unicode adds format characters: regenerate the table for it
        assert table <= running, unicodedata.unidata_version


BAD = [
    "\x00",
    "\n",
    "\r",
    "\t",
    "\x7f",
    "\x85",
    "\x9f",
    "\u00ad",
    "\u200b",
    "\u200d",
    "\u202e",
    "\u2066",
    "\ufeff",
    "\ufdd0",
    "\ufffe",
    "\uffff",
    "\U0001fffe",
    "\U000e0001",
    "\U0010ffff",
]


@pytest.mark.parametrize("bad", BAD, ids=[f"U+{ord(c):04X}" for c in BAD])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("id", Reason.BAD_ATTRIBUTE),
        ("source", Reason.BAD_ATTRIBUTE),
        ("type", Reason.BAD_ATTRIBUTE),
        ("subject", Reason.BAD_SUBJECT),
    ],
)
def test_an_identifier_with_a_forbidden_character_is_invalid(
    bad: str, name: str, reason: Reason
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        check({**make_envelope(), name: f"a{bad}b"})
    assert caught.value.reason is reason
    assert f"U+{ord(bad):04X} at index 1" in caught.value.detail


@pytest.mark.parametrize(
    "good",
    [
        "Kunde Müller / 東京 #7",
        "a b",
        "a\u00a0b",  # no-break space: a separator, not a control
        "e\u0301",  # combining mark
        "\U0001f600",
        "\ue000",  # private use
        "\u0378",  # unassigned, but not a noncharacter
        "/billing/eu",
    ],
)
def test_printable_and_other_unusual_identifiers_are_valid(good: str) -> None:
    event = check(make_envelope(id=good, source=good + "s", type=good, subject=good))
    assert event.customer_id == good


@given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20))
def test_the_check_and_the_schema_pattern_state_the_same_rule(text: str) -> None:
    expected = any(ord(ch) in TABLE for ch in text)
    assert (forbidden_character(text) is not None) == expected
    # `re.fullmatch`: Python's `$` would also match before a final newline.
    assert (re.fullmatch(IDENTIFIER_PATTERN[:-1], text) is None) == expected


def test_a_customer_id_in_a_path_follows_the_subject_rule() -> None:
    assert check_customer_id("Kunde Müller / 東京") == "Kunde Müller / 東京"
    for bad in ("a\u200bb", "a\nb", "", "c" * 129, 7):
        with pytest.raises(InvalidEvent) as caught:
            check_customer_id(bad)
        assert caught.value.reason is Reason.BAD_SUBJECT
