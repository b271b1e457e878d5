"""Pages of the worklist by keyset, so every page costs the same at 100k open cases.

An OFFSET page walks every case before it, and a paginator's ``count(*)`` walks them all;
both grew with the backlog. A page here starts *after* the last case of the previous one
(its priority, arrival time and id: the worklist order, which an index holds), and the
count stops at ``COUNT_CAP`` ("more than 1,000 to read" is what a reader needs).

The cursor in the Next link is those three values as plain text (``CURSOR_PATTERN``, which
the API schema states): no patient data, and every value of that shape is a position (one
past either end of the calendar or of the ids is clamped), so the schema and the answer
agree: a cursor of the documented shape is a page, anything else a 400.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from ..models import Case

COUNT_CAP = 1000
MAX_PAGE_INDEX = 100_000  # an absurd ?page= stays a valid OFFSET
# priority (as Python writes a float) _ microseconds since the epoch _ case id.
CURSOR_PATTERN = r"-?[0-9]{1,20}(\.[0-9]{1,20})?(e[+-]?[0-9]{1,3})?_-?[0-9]{1,18}_[0-9]{1,19}"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_ID = 2**63 - 1


class BadCursor(ValueError):
    """The ``after`` value is not a cursor this app wrote."""


@dataclass(frozen=True)
class Cursor:
    """A position in the worklist order: (-priority, arrival, id)."""

    priority: float
    received_at: dt.datetime
    pk: int

    @classmethod
    def after(cls, case: Case) -> Cursor:
        return cls(case.triage_priority, case.received_at, case.pk)

    def encode(self) -> str:
        micros = (self.received_at - EPOCH) // dt.timedelta(microseconds=1)
        return f"{self.priority!r}_{micros}_{self.pk}"

    @classmethod
    def decode(cls, token: str) -> Cursor:
        if not re.fullmatch(CURSOR_PATTERN, token, re.ASCII):
            raise BadCursor("Not a worklist position; start again from the first page.")
        priority, micros, pk = token.split("_")
        try:
            received = EPOCH + dt.timedelta(microseconds=int(micros))
        except OverflowError:  # past the calendar: before or after every case
            received = dt.datetime.max if int(micros) > 0 else dt.datetime.min
            received = received.replace(tzinfo=dt.UTC)
        return cls(float(priority), received, min(int(pk), MAX_ID))


@dataclass
class Page:
    """One page of cases, where the next one starts, and the bounded count."""

    object_list: list[Case]
    next_cursor: str | None
    count: int
    count_capped: bool
    is_first: bool

    # Iterable like Django's paginator page, which the worklist's callers were written for.
    def __iter__(self) -> Iterator[Case]:
        return iter(self.object_list)

    def __len__(self) -> int:
        return len(self.object_list)


def bounded_count(cases: QuerySet[Case], cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many, counting no further than ``cap`` (a LIMITed subquery, not a full walk)."""
    found = cases.order_by()[: cap + 1].count()
    return min(found, cap), found > cap


def page_number(cases: QuerySet[Case], number: str, size: int) -> Page:
    """Page ``number`` (1-based; anything else is the first) by OFFSET, for old links."""
    try:
        index = min(max(int(number) - 1, 0), MAX_PAGE_INDEX) if number else 0
    except ValueError:
        index = 0
    if index == 0:
        return page_after(cases, None, size)
    return _page(cases, list(cases[index * size : (index + 1) * size + 1]), size, first=False)


def page_after(cases: QuerySet[Case], after: Cursor | None, size: int) -> Page:
    """The ``size`` cases following ``after`` in worklist order (``cases`` comes ordered
    by priority descending, then arrival, then id)."""
    if after is None:
        rows = list(cases[: size + 1])
    else:
        # Same priority, later in arrival order: an index range, not an OR the planner
        # must sort; then lower priorities, also an index range.
        tied = cases.filter(
            triage_priority=after.priority, received_at__gte=after.received_at
        ).exclude(received_at=after.received_at, pk__lte=after.pk)
        rows = list(tied[: size + 1])
        if len(rows) <= size:
            lower = cases.filter(triage_priority__lt=after.priority)
            rows += list(lower[: size + 1 - len(rows)])
    return _page(cases, rows, size, first=after is None)


def _page(cases: QuerySet[Case], rows: list[Case], size: int, first: bool) -> Page:
    """The page of ``rows`` fetched one past ``size``: that extra row says a next exists."""
    shown = rows[:size]
    count, capped = bounded_count(cases)
    return Page(
        object_list=shown,
        next_cursor=Cursor.after(shown[-1]).encode() if len(rows) > size and shown else None,
        count=count,
        count_capped=capped,
        is_first=first,
    )
