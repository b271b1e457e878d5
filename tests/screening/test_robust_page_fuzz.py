"""Every GET page, CSV export and endpoint of the URL × role matrix, fuzzed as the API is.

Schemathesis reaches only what the OpenAPI schema describes; the auditor's pages and CSV files
are not in it. Here each GET URL of ``test_role_matrix`` (and every export table) is first
asked once, as every role, with a query string that records which parameters the view reads;
then Hypothesis sends it, as every role again, queries on those names: the calendar's first
and last days, impossible dates, empty values, numbers past any column, floats that are not
numbers, NUL, other scripts, the vocabulary's own values and real ids, so that filters also
select nothing. The edge of each name is sent on its own first (an explicit example), since a
bad neighbour would make a form refuse the whole filter before the edge reached a query. No
answer may be a server error.

Bounded (``PAGE_FUZZ_EXAMPLES`` drawn queries per URL, 10 unless told, beside the explicit
edges) and derandomised, so CI sends the same requests every run; ``.ci/run`` runs it on
PostgreSQL, where an empty ``IN ()`` is a syntax error.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from django import forms
from django.db import transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.test import Client, override_settings
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from screening import choices
from screening.audit import exports
from screening.audit import forms as audit_forms
from screening.choices import Outcome, Role
from screening.intake import forms as intake_forms
from screening.reading import forms as reading_forms
from screening.reading.serializers import WorklistQuerySerializer
from tests.factories import ModelVersionFactory, N, R, UserFactory, screen
from tests.screening.test_role_matrix import (  # noqa: F401  (fixtures shared with the matrix)
    ANON,
    MATRIX,
    ROLES,
    objects,
    users,
)

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PAGE_FUZZ_EXAMPLES", "10"))
SCREENING = Path(__file__).resolve().parents[2] / "screening"

# --- Which names -------------------------------------------------------------------------

READ_BY_NAME = re.compile(
    r"""(?:GET|query_params|params)(?:\.get|\.getlist)?[(\[]\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""
)
SCHEMA_PARAMETER = re.compile(r"""OpenApiParameter\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")


def query_fields() -> dict[str, Any]:
    """The fields of every form and query serializer, by name: their types pick the values."""
    found: dict[str, Any] = {}
    for module in (intake_forms, reading_forms, audit_forms):
        for _, form in inspect.getmembers(module, inspect.isclass):
            if issubclass(form, forms.BaseForm) and form.__module__ == module.__name__:
                # base_fields: set by the form metaclasses; BaseForm's stub lacks it
                found.update(form.base_fields)  # type: ignore[attr-defined]
    found.update(WorklistQuerySerializer().fields)
    return found


def source_names() -> set[str]:
    """Names read from a request by name anywhere in the code, and the schema's parameters."""
    names = {"format", "next"}
    for source in SCREENING.rglob("*.py"):
        text = source.read_text()
        names |= set(READ_BY_NAME.findall(text)) | set(SCHEMA_PARAMETER.findall(text))
    return names


FIELDS = query_fields()
NAMES = sorted(source_names() | set(FIELDS))

# --- Which values ------------------------------------------------------------------------

DATE_EDGES = ["0001-01-01", "9999-12-31", "1990-01-01", "2099-01-01", "0000-00-00", "2026-02-30"]
DICOM_DATE_EDGES = ["00010101", "99991231", "00010101-99991231", "99991231-", "-00010101"]
NUMBER_EDGES = ["0", "-1", str(2**31), str(2**63), str(2**64), "9" * 40, "1e308", "nan", "-inf"]
GARBAGE = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "١٢٣",  # Arabic-Indic digits
    "\u202e1",
    "'; SELECT 1; --",
    "%",
    "*",
    "[]",
    "null",
    "true",
    "json",
    "csv",
    "10000-01-01",
]


def vocabulary() -> list[str]:
    """Every value of every choice list: a valid filter that may select nothing."""
    found: set[str] = set()
    for _, kind in inspect.getmembers(choices, inspect.isclass):
        if hasattr(kind, "choices") and kind.__module__ == choices.__name__:
            found |= {str(value) for value, _ in kind.choices}
    return sorted(found)


def is_date(name: str) -> bool:
    field = FIELDS.get(name)
    return isinstance(field, forms.DateField | serializers.DateField) or "date" in name.lower()


def is_number(name: str) -> bool:
    field = FIELDS.get(name)
    numeric = (
        forms.IntegerField,
        forms.FloatField,
        forms.ModelChoiceField,
        serializers.IntegerField,
        serializers.FloatField,
    )
    return isinstance(field, numeric) or name in {"page", "limit", "offset", "ids", "case"}


def edges(name: str) -> list[str]:
    """The values sent to ``name`` on their own, before anything is drawn: empty, and the
    ends of its kind (the calendar's first and last days, a selection of nothing, a number
    past any column)."""
    found = [""]
    if is_date(name) and name[:1].isupper():  # a DICOM attribute: YYYYMMDD, or a range
        found += ["00010101-99991231", "99991231"]
    elif is_date(name):
        found += ["0001-01-01", "9999-12-31", "2099-01-01"]
    if is_number(name):
        found += [str(2**64)]
    return found


def values(name: str) -> st.SearchStrategy[str]:
    """What ``name`` is sent when drawn: its kind's values, often, else anything."""
    typed: list[st.SearchStrategy[str]] = []
    if is_date(name):
        typed += [
            st.sampled_from(DATE_EDGES + DICOM_DATE_EDGES),
            st.dates().map(lambda day: day.isoformat()),
            st.tuples(st.dates(), st.dates()).map(
                lambda days: "-".join(d.strftime("%Y%m%d").zfill(8) for d in days)
            ),
        ]
    if is_number(name):
        typed += [
            st.sampled_from(NUMBER_EDGES),
            st.integers(min_value=-(2**70), max_value=2**70).map(str),
            st.floats().map(repr),
        ]
    field_choices = getattr(FIELDS.get(name), "choices", None)
    if isinstance(field_choices, list | dict):
        typed.append(st.sampled_from([str(value) for value in dict(field_choices)] or [""]))
    anything = st.one_of(
        st.sampled_from(GARBAGE), st.sampled_from(vocabulary()), st.text(max_size=20)
    )
    return st.one_of(*typed, anything) if typed else anything


def queries(names: list[str]) -> st.SearchStrategy[dict[str, list[str]]]:
    """Queries of the names the view reads (and, now and then, any other)."""
    read = st.sampled_from(names or NAMES)
    key = st.one_of(read, read, st.sampled_from(NAMES), st.text(min_size=1, max_size=8))
    return st.dictionaries(key, st.just(None), max_size=4).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {name: st.lists(values(name), min_size=1, max_size=2) for name in chosen}
        )
    )


# --- Which URLs --------------------------------------------------------------------------


def export_url(table: str) -> Callable[[dict], str]:
    return lambda _objects: reverse("audit-export", args=[table])


def get_urls() -> list[tuple[str, Callable[[dict], str]]]:
    """The matrix's GET rows, with every export table in place of its one."""
    found = [(label, url) for label, method, url, _ in MATRIX if method == "get"]
    found = [row for row in found if row[0] != "report export"]
    tables = ["cases", "discordant", *exports.REPORT_TABLES]
    found += [(f"report export {table}", export_url(table)) for table in tables]
    return found


URLS = get_urls()
# A 5xx that is the answer, not a failure: the readiness probe says 503 while not ready (here
# the active version's artifact folder does not exist).
MEANT = {"readyz": {503}}

# --- Which names a view reads ------------------------------------------------------------

READ: set[str] = set()


class RecordingQueryDict(QueryDict):
    """A query string that notes each name looked up in it (forms, serializers, views)."""

    def __getitem__(self, key: str) -> Any:
        READ.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        READ.add(str(key))
        return super().__contains__(key)

    def getlist(self, key: str, default: Any = None) -> Any:
        READ.add(key)
        return super().getlist(key, default)


def record_reads(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable:
    """Middleware for the probe alone: the view's ``request.GET`` records what it reads."""

    def middleware(request: HttpRequest) -> HttpResponse:
        request.GET = RecordingQueryDict(request.META.get("QUERY_STRING", ""))
        return get_response(request)

    return middleware


@contextmanager
def recording() -> Iterator[None]:
    from django.conf import settings as django_settings

    chain = [f"{__name__}.record_reads", *django_settings.MIDDLEWARE]
    with override_settings(MIDDLEWARE=chain):
        yield


def names_read(path: str, fixed: list[tuple[str, str]], users: dict) -> list[str]:  # noqa: F811
    """The names the view at ``path`` looks up, as any role (a form reads its fields only
    once bound, so the probe sends one name no view knows)."""
    READ.clear()
    with recording():
        for role in ROLES:
            client = Client()
            if role != ANON:
                client.force_login(users[role])
            with transaction.atomic():
                client.get(path, [*fixed, ("probe", "1")])
    return sorted(name for name in READ if isinstance(name, str) and name != "probe")


# --- The fuzz ----------------------------------------------------------------------------


@pytest.fixture
def screened(objects, users):  # noqa: F811
    """The matrix's objects beside two concordant screens with outcomes: figures to compute,
    and no discordant case yet."""
    version = ModelVersionFactory(threshold=0.5, is_active=True)
    pair = [users["radiologist"], UserFactory(role=Role.RADIOLOGIST, username="rad9")]
    screen(version, 0.9, [R, R], pair, outcome=Outcome.MALIGNANT)
    screen(version, 0.1, [N, N], pair, outcome=Outcome.NORMAL)
    return objects


@pytest.fixture
def clients(users):  # noqa: F811
    """One signed-in client per role (and a stranger's), so each example costs one request."""
    found = {ANON: Client()}
    for role, user in users.items():
        found[role] = Client()
        found[role].force_login(user)
    return found


@pytest.mark.parametrize(("label", "url"), URLS, ids=[u[0] for u in URLS])
def test_no_query_makes_a_page_or_export_fail(clients, users, screened, label, url, monkeypatch):  # noqa: F811
    # /readyz waits a second for workers' answers to its ping, and none runs here: each of
    # its examples would wait it out. The wait's length is not what this test looks at.
    monkeypatch.setattr("screening.ops.health.WORKER_REPLY_SECONDS", 0.05)
    base = urlsplit(url(screened))
    fixed = parse_qsl(base.query, keep_blank_values=True)
    names = names_read(base.path, fixed, users)

    def run(query: dict[str, list[str]]) -> None:
        data: dict[str, list[str]] = {}
        for key, item in fixed:
            data.setdefault(key, []).append(item)
        data.update(query)
        for role in ROLES:  # every query as every role: a drawn role would leave some unseen
            with transaction.atomic():  # a failed query must not poison the next request's
                response = clients[role].get(base.path, data)
            meant = response.status_code in MEANT.get(label, set())
            assert response.status_code < 500 or meant, (label, role, data, response.content[:500])

    fuzz = given(query=queries(names))(run)
    for name in names:
        for edge in edges(name):
            fuzz = example(query={name: [edge]})(fuzz)
    settings(
        max_examples=EXAMPLES if names else 3,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(fuzz)()


def test_the_fuzz_knows_the_parameters_views_read(users, screened):  # noqa: F811
    """The names come from the code and from what each view reads, so a new filter joins the
    fuzz by itself; these must be among them."""
    expected = {"date_from", "date_to", "direction", "threshold", "page", "ids", "check"}
    assert expected | {"StudyDate", "limit", "after", "format", "refresh"} <= set(NAMES)
    dashboard = names_read(reverse("audit-dashboard"), [], users)
    assert {"date_from", "date_to", "model_version", "refresh", "bootstrap"} <= set(dashboard)
    assert "StudyDate" in names_read(reverse("dicomweb-studies"), [], users)
