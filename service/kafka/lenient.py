"""A fallback record parser for aiokafka that survives header keys which are not UTF-8.

aiokafka decodes every header key strictly: one record whose key is not UTF-8 makes every fetch
of its partition raise `UnicodeDecodeError`, and the partition would never move again. When the
consumer meets that error it switches the fetcher (process-wide) to this parser, the pure-Python
one of aiokafka with header keys decoded with `surrogateescape`: the record then arrives, the codec
refuses it as `bad_headers`, and it goes to the dead-letter topic like any other poison record.
It is slower than aiokafka's compiled parser, so it is only used once such a record was seen.
"""

from __future__ import annotations

from typing import Any, SupportsIndex

from aiokafka.consumer import fetcher as _fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record import default_records as _default
from aiokafka.record import memory_records as _memory

_STRICT = _fetcher.MemoryRecords


class _EscapingBytes(bytearray):
    """A record buffer whose slices decode bytes that are not UTF-8 as surrogates."""

    def __getitem__(self, key: SupportsIndex | slice) -> Any:
        item = bytearray.__getitem__(self, key)
        return _EscapingBytes(item) if isinstance(key, slice) else item

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytearray.decode(self, encoding, "surrogateescape")


class _LenientBatch(_default._DefaultRecordBatchPy):  # type: ignore[misc]
    def __init__(self, buffer: Any) -> None:
        super().__init__(buffer)
        self._buffer = _EscapingBytes(self._buffer)  # type: ignore[has-type]

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()
        if not isinstance(self._buffer, _EscapingBytes):
            self._buffer = _EscapingBytes(self._buffer)


class _LenientMemoryRecords(_memory._MemoryRecordsPy):  # type: ignore[misc]
    def next_batch(self, *_: Any) -> Any:
        # aiokafka's own, but building lenient v2 batches.
        next_slice = self._next_slice
        if next_slice is None:
            return None
        if len(next_slice) < self.MIN_SLICE:
            raise CorruptRecordException(
                "Record size is less than the minimum record overhead "
                f"({self.MIN_SLICE - self.LOG_OVERHEAD})"
            )
        self._cache_next()
        magic = next_slice[self.MAGIC_OFFSET]
        if magic >= 2:
            return _LenientBatch(next_slice)
        return _memory.LegacyRecordBatch(next_slice, magic)


def enable() -> bool:
    """Use the lenient parser for every fetch from now on; False if it already was."""
    if _fetcher.MemoryRecords is _LenientMemoryRecords:
        return False
    _fetcher.MemoryRecords = _LenientMemoryRecords
    return True


def disable() -> None:
    _fetcher.MemoryRecords = _STRICT


def is_utf8(text: str) -> bool:
    """False for a header key that came through the lenient parser with bytes not UTF-8."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """A header key as something a producer can send again: bytes not UTF-8 as `\\xNN`."""
    if is_utf8(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
