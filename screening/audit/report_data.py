"""The case columns behind the auditor's figures: one pass over the case table.

Every case carries its reads' gist (``Case.note_read``), so the columns of a million screens
are one scan of the cases joined to the chosen version's case results, never a join with the
reads. On PostgreSQL the columns travel as one binary value each (``int8send`` and
``float8send`` aggregated with ``string_agg``) and NumPy decodes them: shipping a million rows
as Python tuples would cost seconds on its own. Elsewhere (SQLite) they come as rows. Both
ways read the same table through the same filter, and a test holds them equal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ..choices import AIStatus, CaseStatus, Outcome
from ..models import AIResult, Case, ModelVersion, density_bit
from . import simulation

KINDS = ("first", "second", "arbitration")
# Bits per reader id, and the most readers a row's packed column can hold.
READER_BITS = 21
READER_MASK = (1 << READER_BITS) - 1
NO_SECONDS = 0xFFFFFFFF
DAY_US = 86_400_000_000


@dataclass
class CaseData:
    """One entry per case in the filter; read columns are (3, cases): first, second,
    arbitration. Codes are ``stats.codes``: 1 yes, 0 no, -1 none."""

    case_id: np.ndarray
    received_us: np.ndarray  # microseconds since the epoch (UTC)
    closed: np.ndarray  # closed by the reading pathway
    hours: np.ndarray  # upload to final decision; NaN while open
    closed_us: np.ndarray  # when closed, as ``received_us``; -1: not closed
    cancer: np.ndarray
    score: np.ndarray  # the chosen version's case score; NaN where it has none
    recall: np.ndarray
    reader: np.ndarray  # 0: no such read
    seconds: np.ndarray  # NaN: not timed
    shown: np.ndarray  # the reader was shown the chosen version's result
    agrees: np.ndarray

    def __len__(self) -> int:
        return len(self.case_id)

    def take(self, index: np.ndarray) -> CaseData:
        """The cases at ``index`` (a mask or positions), in that order."""
        return CaseData(
            **{
                f.name: (value[:, index] if value.ndim == 2 else value[index])
                for f in fields(self)
                for value in [getattr(self, f.name)]
            }
        )

    @property
    def day(self) -> np.ndarray:
        """The UTC date received, as days since the epoch."""
        return self.received_us // DAY_US

    def in_received_order(self) -> CaseData:
        return self.take(np.lexsort((self.case_id, self.received_us)))


def _day_start(day: dt.date, later: int = 0) -> Any | None:
    """Midnight of ``day`` (plus ``later`` days) in the current time zone, as the database
    takes a datetime: the same cut as Django's ``received_at__date`` lookup, but one an index
    can walk. None where that moment lies past the calendar's edge (before year 1 or after
    9999 once in UTC): no case was received there, so it bounds nothing."""
    try:
        moment = timezone.make_aware(dt.datetime.combine(day, dt.time.min) + dt.timedelta(later))
        return connection.ops.adapt_datetimefield_value(moment)
    except OverflowError:
        return None


def where(
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    reader_id: int | None = None,
    density: str = "",
) -> tuple[list[str], list[Any]]:
    """The report filter as SQL on ``screening_case``: clauses and their parameters.

    Column names are left unqualified so the clauses hold wherever Django aliases the table
    (a subquery); no other table these queries join has such columns."""
    clauses: list[str] = []
    params: list[Any] = []
    start = _day_start(date_from) if date_from else None
    if start is not None:
        clauses.append("received_at >= %s")
        params.append(start)
    end = _day_start(date_to, later=1) if date_to else None
    if end is not None:
        clauses.append("received_at < %s")
        params.append(end)
    if reader_id:
        clauses.append(
            "(first_reader_id = %s OR second_reader_id = %s OR arbitration_reader_id = %s)"
        )
        params += [reader_id] * 3
    if density:
        clauses.append("(read_densities & %s) <> 0")
        params.append(density_bit(density))
    return clauses, params


def filtered_cases(clauses: list[str], params: list[Any]) -> QuerySet[Case]:
    """The cases the clauses of ``where`` select (written here, values as parameters)."""
    if not clauses:
        return Case.objects.all()
    return Case.objects.filter(RawSQL(" AND ".join(clauses), params, BooleanField()))  # noqa: S611


def case_data(
    clauses: list[str], params: list[Any], version: ModelVersion | None, fast: bool | None = None
) -> CaseData:
    """The filter's cases as columns, in no particular order (``in_received_order`` sorts).

    ``fast``: the packed PostgreSQL transfer (None: wherever it applies)."""
    if fast is None:
        fast = connection.vendor == "postgresql" and _reader_ids_fit()
    if fast:
        return _packed(clauses, params, version)
    return _rows(clauses, params, version)


def _reader_ids_fit() -> bool:
    """Whether every reader and version id fits the record's packed columns."""
    from django.contrib.auth import get_user_model

    for model in (get_user_model(), ModelVersion):
        last = model.objects.order_by("-pk").values_list("pk", flat=True).first()
        if last is not None and last >= 1 << READER_BITS:
            return False
    return True


# --- Rows (any database) --------------------------------------------------------------


def _code(value: bool | None) -> int:
    return -1 if value is None else int(value)


def _cancer(outcome: str) -> int:
    return -1 if not outcome else int(outcome == Outcome.MALIGNANT)


def _epoch_us(moment: dt.datetime) -> int:
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _rows(clauses: list[str], params: list[Any], version: ModelVersion | None) -> CaseData:
    per_kind = ["reader_id", "recall", "seconds", "seen_version_id", "agrees"]
    names = [f"{kind}_{part}" for kind in KINDS for part in per_kind]
    cases = filtered_cases(clauses, params)
    rows = list(cases.values_list("pk", "received_at", "closed_at", "status", "outcome", *names))
    scores = (
        dict(
            AIResult.for_cases.filter(
                case__in=cases, model_version=version, status=AIStatus.DONE
            ).values_list("case_id", "probability")
        )
        if version is not None
        else {}
    )
    n = len(rows)
    read = np.array([row[5:] for row in rows], dtype=object).reshape(n, 3, len(per_kind))
    version_id = version.pk if version is not None else None

    def column(part: str, convert: Any, dtype: Any) -> np.ndarray:
        values = read[:, :, per_kind.index(part)].T.ravel()
        return np.array([convert(v) for v in values], dtype).reshape(3, n)

    return CaseData(
        case_id=np.array([row[0] for row in rows], np.int64),
        received_us=np.array([_epoch_us(row[1]) for row in rows], np.int64),
        closed=np.array([row[3] == CaseStatus.CLOSED for row in rows], bool),
        closed_us=np.array([_epoch_us(row[2]) if row[2] else -1 for row in rows], np.int64),
        hours=np.array(
            [
                (row[2] - row[1]).total_seconds() / 3600
                if row[3] == CaseStatus.CLOSED and row[2]
                else np.nan
                for row in rows
            ],
            float,
        ),
        cancer=np.array([_cancer(row[4]) for row in rows], np.int8),
        score=np.array(
            [np.nan if scores.get(row[0]) is None else scores[row[0]] for row in rows], float
        ),
        recall=column("recall", _code, np.int8),
        reader=column("reader_id", lambda v: v or 0, np.int64),
        seconds=column("seconds", lambda v: np.nan if v is None else v, float),
        shown=column("agrees", lambda v: v is not None, bool)
        & column("seen_version_id", lambda v: v is not None and v == version_id, bool),
        agrees=column("agrees", _code, np.int8),
    )


def case_text(
    clauses: list[str], params: list[Any], case_ids: list[int] | None = None
) -> dict[int, tuple[str, str, str]]:
    """Pseudonym, status and outcome of the filter's cases (or of ``case_ids`` among them),
    by case: the text a case export needs beside the columns, in one plain query."""
    where = list(clauses)
    values = list(params)
    if case_ids == []:
        return {}  # SQL has no empty ``IN ()``
    if case_ids is not None:
        where.append(f"screening_case.id IN ({', '.join(['%s'] * len(case_ids))})")
        values += case_ids
    sql = (
        "SELECT screening_case.id, screening_patient.pseudonym, screening_case.status,"  # noqa: S608
        " screening_case.outcome FROM screening_case JOIN screening_patient"
        " ON screening_patient.id = screening_case.patient_id"
        + (" WHERE " + " AND ".join(where) if where else "")
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return {row[0]: row[1:] for row in cursor.fetchall()}


@dataclass
class Coded:
    """A column of few distinct words, as codes: row i holds ``words[codes[i]]``. A million
    statuses travel and are written as small integers, each word once."""

    codes: np.ndarray
    words: list[str]

    @classmethod
    def of(cls, cells: list[str]) -> Coded:
        distinct = list(dict.fromkeys(cells))  # few words: hashed, never sorted
        index = {word: i for i, word in enumerate(distinct)}
        return cls(np.fromiter(map(index.__getitem__, cells), np.int64, len(cells)), distinct)

    def cells(self) -> list[str]:
        return np.array(self.words, dtype=object)[self.codes].tolist()


@dataclass
class CaseText:
    """Pseudonym, status and outcome of each case, in the order asked for."""

    patient: list[str]
    status: Coded
    outcome: Coded


def case_texts(
    clauses: list[str], params: list[Any], case_ids: np.ndarray, fast: bool | None = None
) -> CaseText:
    """``case_text`` of the filter's cases, aligned with ``case_ids`` (every one of them
    among the filter's). ``fast``: in one binary value and one text (``_packed_text``;
    None: on PostgreSQL for more than 10,000 cases)."""
    if fast is None:
        fast = connection.vendor == "postgresql" and len(case_ids) > 10_000
    if fast:
        found = _packed_text(clauses, params, case_ids)
        if found is not None:
            return found
    few = len(case_ids) <= 10_000  # a list of ids is then quicker than the whole filter
    text = case_text(clauses, params, case_ids.tolist() if few else None)
    rows = list(map(text.__getitem__, case_ids.tolist()))
    return CaseText(
        patient=[row[0] for row in rows],
        status=Coded.of([row[1] for row in rows]),
        outcome=Coded.of([row[2] for row in rows]),
    )


# --- Packed (PostgreSQL) --------------------------------------------------------------


# PostgreSQL's binary timestamps count microseconds from 2000-01-01.
PG_EPOCH_US = 946_684_800_000_000
# ``screening_case.report_record``, the generated column of migration 0012.
RECORD_LAYOUT = np.dtype(
    [
        ("case_id", ">i8"),
        ("received", ">i8"),
        ("decided", ">i8"),  # closed_at, else received_at
        ("codes", ">u4"),
        ("readers", ">u8"),
        ("seconds", ">u8"),
        ("seconds3", ">u4"),
        ("seen", ">u8"),
    ]
)
SCORE_LAYOUT = np.dtype([("case_id", ">i8"), ("score", ">f8")])


def _case_sql(clauses: list[str]) -> str:
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return f"SELECT string_agg(report_record, ''::bytea) FROM screening_case{where}"  # noqa: S608


def _scores_sql(clauses: list[str]) -> str:
    """A version's finished case scores, by case: the whole version's from its index
    (``airesult_scores``), or those of the filter's cases through a join."""
    c = "screening_case"
    result = (
        "result.model_version_id = %s AND result.image_id IS NULL"
        f" AND result.status = '{AIStatus.DONE}' AND result.probability IS NOT NULL"
    )
    values = "int8send(result.case_id::int8) || float8send(result.probability)"
    if not clauses:
        return (
            f"SELECT string_agg({values}, ''::bytea) FROM screening_airesult result WHERE {result}"  # noqa: S608
        )
    return (
        f"SELECT string_agg({values}, ''::bytea) FROM {c} JOIN screening_airesult result"  # noqa: S608
        f" ON result.case_id = {c}.id AND {result} WHERE {' AND '.join(clauses)}"
    )


def _fetch(sql: str, params: list[Any], layout: np.dtype) -> np.ndarray:
    """One aggregated binary value, received as binary (text would double it as hex)."""
    import psycopg  # PostgreSQL only; Django's own cursors are client-side, text only

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        row = cursor.fetchone()
    return np.frombuffer(bytes(row[0] or b"") if row else b"", layout)


def _fetch_apart(sql: str, params: list[Any], layout: np.dtype) -> np.ndarray:
    """``_fetch`` on a connection of its own (this thread's), closed afterwards."""
    try:
        return _fetch(sql, params, layout)
    finally:
        connection.close()


def _both(
    first: tuple[str, list[Any], np.dtype], second: tuple[str, list[Any], np.dtype] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Two fetches; side by side on two connections (two cores) outside a transaction,
    where a second connection sees the same committed rows."""
    if second is None:
        return _fetch(*first), None
    if connection.in_atomic_block:
        return _fetch(*first), _fetch(*second)
    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(_fetch_apart, *second)
        return _fetch(*first), other.result()


def positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of ``wanted`` is in ``ids`` (distinct ids; one not there gets some other
    place, which the caller checks). Through a table indexed by id where the ids are dense
    enough (a million random look-ups, not a million binary searches), else by sorting."""
    if not len(ids):
        return np.zeros(len(wanted), np.int64)
    top = int(max(ids.max(), wanted.max(initial=0)))
    if ids.min() >= 0 and wanted.min(initial=0) >= 0 and top < 4 * len(ids) + 1_000:
        table = np.zeros(top + 1, np.int64)
        table[ids] = np.arange(len(ids))
        return table[wanted]
    order = np.argsort(ids)
    return order[np.searchsorted(ids, wanted, sorter=order).clip(max=len(ids) - 1)]


def align(case_ids: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (given for ``ids``) at ``case_ids``; NaN where an id has none."""
    found = np.full(len(case_ids), np.nan)
    if not len(case_ids) or not len(ids):
        return found
    if len(ids) == len(case_ids) and np.array_equal(ids, case_ids):  # every case, same order
        return values.astype(float)
    if np.all(case_ids[1:] > case_ids[:-1]):  # already in id order, as a fresh table is
        at = np.searchsorted(case_ids, ids).clip(max=len(case_ids) - 1)
        hit = case_ids[at] == ids
        found[at[hit]] = values[hit]
        return found
    order = np.argsort(case_ids)
    at = np.searchsorted(case_ids, ids, sorter=order).clip(max=len(case_ids) - 1)
    hit = case_ids[order[at]] == ids
    found[order[at[hit]]] = values[hit]
    return found


def _unpack(values: np.ndarray, i: int) -> np.ndarray:
    """The ``i``-th of three ids packed ``READER_BITS`` apart."""
    return ((values >> np.uint64(READER_BITS * i)) & np.uint64(READER_MASK)).astype(np.int64)


def _packed(clauses: list[str], params: list[Any], version: ModelVersion | None) -> CaseData:
    version_id = version.pk if version is not None else 0
    scores = (
        (_scores_sql(clauses), [version_id, *params], SCORE_LAYOUT) if version is not None else None
    )
    raw, scored = _both((_case_sql(clauses), params, RECORD_LAYOUT), scores)
    n = len(raw)
    codes = raw["codes"].astype(np.uint16)  # 16 bits used; narrow arrays decode fastest

    def code(shift: int) -> np.ndarray:
        return ((codes >> np.uint16(shift)) & np.uint16(3)).astype(np.int8) - np.int8(1)

    case_ids = raw["case_id"].astype(np.int64)
    received = raw["received"].astype(np.int64) + PG_EPOCH_US
    closed = (codes & np.uint16(4)).astype(bool)
    has_closed_at = (codes & np.uint16(8)).astype(bool)
    closed_us = np.where(has_closed_at, raw["decided"].astype(np.int64) + PG_EPOCH_US, -1)
    decided = np.flatnonzero(closed & has_closed_at)
    hours = np.full(n, np.nan)
    hours[decided] = (closed_us[decided] - received[decided]) / 1e6 / 3600
    both_seconds = raw["seconds"].astype(np.uint64)
    seconds = np.empty((3, n))
    for i, timed in enumerate(
        [
            both_seconds & np.uint64(NO_SECONDS),
            both_seconds >> np.uint64(32),
            raw["seconds3"].astype(np.uint64),
        ]
    ):
        seconds[i] = timed
        seconds[i, timed == NO_SECONDS] = np.nan
    readers, seen = raw["readers"].astype(np.uint64), raw["seen"].astype(np.uint64)
    agrees = np.stack([code(10 + 2 * i) for i in range(3)])
    return CaseData(
        case_id=case_ids,
        received_us=received,
        closed=closed,
        hours=hours,
        closed_us=closed_us,
        cancer=code(0),
        score=(
            align(case_ids, scored["case_id"].astype(np.int64), scored["score"].astype(float))
            if scored is not None
            else np.full(n, np.nan)
        ),
        recall=np.stack([code(4 + 2 * i) for i in range(3)]),
        reader=np.stack([_unpack(readers, i) for i in range(3)]),
        seconds=seconds,
        # Overrides count only reads shown this version's result: what the reader overruled.
        shown=(agrees >= 0) & np.stack([_unpack(seen, i) == version_id for i in range(3)]),
        agrees=agrees,
    )


TEXT_LAYOUT = np.dtype(
    [("case_id", ">i8"), ("status", ">i2"), ("outcome", ">i2"), ("chars", ">i4")]
)


@dataclass
class PackedText:
    """The filter's cases' pseudonyms, statuses and outcomes as they came, unaligned."""

    ids: np.ndarray
    status: np.ndarray  # place among CaseStatus's values, from 1
    outcome: np.ndarray  # place among "" and Outcome's values, from 1
    pseudonyms: np.ndarray

    def aligned(self, case_ids: np.ndarray) -> CaseText:
        at = positions(self.ids, case_ids)
        if len(case_ids) and (not len(self.ids) or not np.array_equal(self.ids[at], case_ids)):
            raise ValueError("a case asked for is not among the filter's")
        return CaseText(
            patient=self.pseudonyms[at].tolist(),
            status=Coded(self.status[at] - 1, list(CaseStatus.values)),
            outcome=Coded(self.outcome[at] - 1, ["", *Outcome.values]),
        )


def _packed_text(clauses: list[str], params: list[Any], case_ids: np.ndarray) -> CaseText | None:
    found = _fetch_text(clauses, params)
    return None if found is None else found.aligned(case_ids)


def _fetch_text(clauses: list[str], params: list[Any]) -> PackedText | None:
    """Every case's id, status and outcome (as their place among the choices) and its
    pseudonym's length as one binary value, the pseudonyms as one text beside it: two
    aggregates of one scan, so they take the rows in the same order, and the text is cut
    by the lengths. None where a status or outcome is not among the choices (then rows)."""
    statuses, outcomes = list(CaseStatus.values), ["", *Outcome.values]
    c, p = "screening_case", "screening_patient"
    record = (
        f"int8send({c}.id) || int2send(coalesce(array_position(%s::text[], {c}.status::text), 0)::int2)"
        f" || int2send(coalesce(array_position(%s::text[], {c}.outcome::text), 0)::int2)"
        f" || int4send(char_length({p}.pseudonym))"
    )
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    sql = (
        f"SELECT string_agg({record}, ''::bytea), string_agg({p}.pseudonym, '')"  # noqa: S608
        f" FROM {c} JOIN {p} ON {p}.id = {c}.patient_id{where}"
    )
    import psycopg

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, [statuses, outcomes, *params])
        row = cursor.fetchone()
    packed, joined = (bytes(row[0] or b""), row[1] or "") if row else (b"", "")
    raw = np.frombuffer(packed, TEXT_LAYOUT)
    if (raw["status"] == 0).any() or (raw["outcome"] == 0).any():
        return None
    ends = np.cumsum(raw["chars"].astype(np.int64))
    if len(raw) and ends[-1] != len(joined):
        raise ValueError("pseudonyms and their lengths disagree")
    starts = (ends - raw["chars"]).tolist()
    cut = [joined[a:b] for a, b in zip(starts, ends.tolist(), strict=True)]
    return PackedText(
        ids=raw["case_id"].astype(np.int64),
        status=raw["status"].astype(np.int64),
        outcome=raw["outcome"].astype(np.int64),
        pseudonyms=np.array(cut, dtype=object),
    )


def _fetch_text_apart(clauses: list[str], params: list[Any]) -> PackedText | None:
    try:
        return _fetch_text(clauses, params)
    finally:
        connection.close()


@contextmanager
def texts_ahead(
    clauses: list[str], params: list[Any]
) -> Iterator[Callable[[np.ndarray], CaseText]]:
    """``case_texts`` of every case of the filter, fetched on a connection of its own while
    the caller reads the columns (PostgreSQL outside a transaction, where a second
    connection sees the same committed rows: the query's second core); the function
    given waits for it and aligns it with the cases asked for."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield lambda case_ids: case_texts(clauses, params, case_ids)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        fetched = pool.submit(_fetch_text_apart, clauses, params)

        def texts(case_ids: np.ndarray) -> CaseText:
            found = fetched.result()
            if found is None:
                return case_texts(clauses, params, case_ids, fast=False)
            return found.aligned(case_ids)

        yield texts


def version_scores(
    clauses: list[str], params: list[Any], version_id: int, case_ids: np.ndarray
) -> np.ndarray:
    """Another version's case scores, aligned with ``case_ids`` (NaN where it has none)."""
    if connection.vendor == "postgresql":
        raw = _fetch(_scores_sql(clauses), [version_id, *params], SCORE_LAYOUT)
        ids, scores = raw["case_id"].astype(np.int64), raw["score"].astype(float)
    else:
        rows = list(
            AIResult.for_cases.filter(
                case__in=filtered_cases(clauses, params),
                model_version_id=version_id,
                status=AIStatus.DONE,
                probability__isnull=False,
            ).values_list("case_id", "probability")
        )
        ids = np.array([r[0] for r in rows], np.int64)
        scores = np.array([r[1] for r in rows], float)
    return align(case_ids, ids, scores)


def replay_cohort(
    version: ModelVersion, date_from: dt.date | None = None, date_to: dt.date | None = None
) -> simulation.Cohort:
    """The screens received in the date range that the policy simulator can replay, from
    the same one pass as the dashboard's columns."""
    clauses, params = where(date_from, date_to)
    data = case_data(clauses, params, version)
    return simulation.cohort(data.closed, data.score, data.recall, data.cancer)
