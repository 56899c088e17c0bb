"""The characters an identifier (`id`, `source`, `type`, `subject`) may not hold (README).

Control and format characters (Unicode categories Cc and Cf: NUL, newline, DEL, C1, zero-width,
bidirectional overrides, BOM) and noncharacters make two ids that look the same differ, or break
logs and terminals. The set is a table rather than a `unicodedata` scan so that the JSON Schema
states exactly the rule the code applies; a test checks the table against `unicodedata`.
"""

from __future__ import annotations

import re

UNICODE_VERSION = "14.0.0"

# (first, last) code points: Cc, Cf and the noncharacters (U+FDD0..U+FDEF, U+xxFFFE, U+xxFFFF).
FORBIDDEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFDD0, 0xFDEF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0xFFFE, 0xFFFF),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    *((plane << 16 | 0xFFFE, plane << 16 | 0xFFFF) for plane in range(1, 14)),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xEFFFE, 0xEFFFF),
    (0xFFFFE, 0xFFFFF),
    (0x10FFFE, 0x10FFFF),
)


def _char(code_point: int) -> str:
    # `\uXXXX` reads the same in Python's `re` and in ECMA-262; beyond the BMP neither escape is
    # shared, so those stand as the characters themselves.
    return f"\\u{code_point:04X}" if code_point <= 0xFFFF else chr(code_point)


_CLASS = "".join(
    _char(first) if first == last else f"{_char(first)}-{_char(last)}"
    for first, last in FORBIDDEN_RANGES
)
IDENTIFIER_PATTERN = f"^[^{_CLASS}]+$"
_FORBIDDEN = re.compile(f"[{_CLASS}]")


def forbidden_character(value: str) -> str | None:
    """Where `value` holds a forbidden character (`U+200B at index 3`), or None."""
    # A printable string has no character of category C* at all: the common case costs one
    # C-level scan.
    if value.isprintable():
        return None
    found = _FORBIDDEN.search(value)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X} at index {found.start()}"
