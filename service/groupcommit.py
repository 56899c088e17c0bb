"""Group commit: concurrent small ingest requests share one transaction.

A request's events join the open group; the group is applied when its collection window has
passed (or it is full) and a slot is free, as ONE batch in one transaction, and each member is
answered with the results of its own events only after that transaction committed: durability is
unchanged (a result means committed). While every slot is busy the open group keeps collecting,
so under load groups grow to fill the time a transaction takes.

The group is applied as one batch in members' arrival order, so the batch's own rules hold across
members exactly as if their requests had been serialised: a (source, id) sent by two members is
`applied` for the first and `duplicate` (or `conflict`) for the second. When the shared
transaction fails, each member is applied again on its own, so one member's bad data fails that
member alone; a failure of its own is its error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from service.domain.envelope import Event
from service.pipeline import Applied

Apply = Callable[[list[Event]], Awaitable[Applied]]


@dataclass(slots=True)
class _Member:
    events: Sequence[Event]
    answer: asyncio.Future[Applied]


@dataclass(slots=True)
class _Group:
    members: list[_Member] = field(default_factory=list)
    size: int = 0
    full: asyncio.Event = field(default_factory=asyncio.Event)


class GroupCommit:
    """Collects `submit`ted batches into shared transactions run by `apply`."""

    def __init__(self, apply: Apply, *, window: float, max_events: int, in_flight: int = 2) -> None:
        self._apply = apply
        self.window = window
        self.max_events = max_events
        self._open: _Group | None = None
        self._slots = asyncio.Semaphore(in_flight)
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, events: Sequence[Event]) -> Applied:
        """Apply `events` in a transaction shared with other submitters; their results once it
        committed (with the alert kinds of the whole transaction)."""
        if len(events) >= self.max_events:
            async with self._slots:
                return await self._apply(list(events))
        group = self._open
        if group is None or group.size + len(events) > self.max_events:
            group = self._open = _Group()
            task = asyncio.create_task(self._run(group))
            # The group runs in a task of its own: a member that goes away does not take it along.
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        answer: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        group.members.append(_Member(events, answer))
        group.size += len(events)
        if group.size >= self.max_events:
            group.full.set()
        return await answer

    async def _run(self, group: _Group) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.window):
                await group.full.wait()
        try:
            async with self._slots:
                if self._open is group:
                    self._open = None  # sealed: later requests start the next group
                await self._commit(group.members)
        finally:
            for member in group.members:  # cancelled (shut down) before its answer
                _answer(member, RuntimeError("the shared transaction was abandoned"))

    async def _commit(self, members: list[_Member]) -> None:
        try:
            applied = await self._apply([e for m in members for e in m.events])
        except Exception as exc:
            if len(members) == 1:
                _answer(members[0], exc)
                return
            for member in members:
                try:
                    _answer(member, await self._apply(list(member.events)))
                except Exception as own:
                    _answer(member, own)
            return
        start = 0
        for member in members:
            end = start + len(member.events)
            _answer(member, Applied(applied.results[start:end], applied.alert_kinds))
            start = end


def _answer(member: _Member, outcome: Applied | BaseException) -> None:
    if member.answer.done():  # its request was cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        member.answer.set_exception(outcome)
    else:
        member.answer.set_result(outcome)
