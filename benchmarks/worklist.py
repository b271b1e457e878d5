"""Worklist latency at scale: seeds N cases in a throw-away test database, then prints
p50/p95 server time of the worklist page and API.

    python benchmarks/worklist.py              # 100k cases, on DATABASE_URL (default SQLite)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mammo_portal python benchmarks/worklist.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mammo_portal.settings")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-for-production-use")
os.environ.setdefault("SECURE_HTTPS", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # not one access line per timed request

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402

from screening.choices import AIStatus, CaseStatus, Decision, ReadKind, Role  # noqa: E402
from screening.models import (  # noqa: E402
    AIResult,
    Case,
    ModelVersion,
    Patient,
    Read,
    version_band,
)

# A version validated for triage, with exam-score deciles and bands: the worklist then
# orders by score and each row shows "7/10 · High", the heavier of the two renderings.
VALIDATED = {
    "schema": 2,
    "film_auc": {
        "auc": 0.86,
        "ci95": [0.8, 0.91],
        "films": 400,
        "abnormal_films": 120,
        "normal_films": 280,
        "women": 200,
        "held_out": True,
        "method": "-",
    },
    "triage": {"validated": True, "reason": "benchmark"},
    "exam_score": {"normal_films": 200, "cuts": [0.1 * i for i in range(1, 10)]},
    "calibration": {"method": "isotonic", "films": 400, "scores": [0, 1], "probabilities": [0, 1]},
    "bands": {
        "films": 400,
        "intermediate_from": 0.2,
        "high_from": 0.4,
        "intermediate": {"sensitivity": 0.9, "specificity": 0.5},
        "high": {"sensitivity": 0.7, "specificity": 0.9},
    },
    "heatmap": {"passed": True, "reason": "benchmark"},
    "marks": {"passed": True, "reason": "benchmark"},
}

# ... and switched on by two people on its figures on this site's screens, without which a
# site orders no worklist by it (AI_TRIAGE_NEEDS_LOCAL_EVIDENCE, on by default).
SWITCHED_ON = {
    "local": {"auc": 0.86, "ci95": [0.8, 0.91], "screens": 6000, "cancers": 120, "women": 5200},
    "proposed_by": "bench-admin",
    "confirmed_by": "bench-auditor",
}

STATUS_MIX = [CaseStatus.READY] * 6 + [
    CaseStatus.AWAITING_AI,
    CaseStatus.FIRST_READ_DONE,
    CaseStatus.ARBITRATION,
    CaseStatus.CLOSED,
]


def seed(count: int, reader) -> None:
    rng = random.Random(7)
    version = ModelVersion.objects.create(
        architecture="custom_cnn",
        version="bench",
        artifact_path="-",
        checksum="0" * 64,
        threshold=0.4,
        is_active=True,
        evidence=VALIDATED,
        triage_switch=SWITCHED_ON,
    )
    batch = 10_000
    for start in range(0, count, batch):
        size = min(batch, count - start)
        patients = Patient.objects.bulk_create(
            [Patient(pseudonym=f"BENCH-{start + i:07d}") for i in range(size)]
        )
        cases = []
        for patient in patients:
            status = rng.choice(STATUS_MIX)
            score = None if status == CaseStatus.AWAITING_AI else rng.random()
            cases.append(
                Case(
                    patient=patient,
                    status=status,
                    ai_score=score,
                    triage_priority=-1.0 if score is None else score,
                    risk_band=version_band(score, version),
                )
            )
        cases = Case.objects.bulk_create(cases)
        AIResult.objects.bulk_create(
            [
                AIResult(
                    model_version=version, case=c, status=AIStatus.DONE, probability=c.ai_score
                )
                for c in cases
                if c.ai_score is not None
            ]
        )
        Read.objects.bulk_create(
            [
                Read(
                    case=c,
                    reader=reader,
                    kind=ReadKind.FIRST,
                    decision=Decision.NO_RECALL,
                    birads=1,
                )
                for c in cases
                if c.status == CaseStatus.FIRST_READ_DONE and rng.random() < 0.5
            ]
        )
    with connection.cursor() as cursor:
        # Link each case to its result, and spread arrival times (auto_now_add ignores values).
        cursor.execute(
            "UPDATE screening_case SET ai_result_id = (SELECT r.id FROM screening_airesult r "
            "WHERE r.case_id = screening_case.id AND r.image_id IS NULL)"
        )
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE screening_case SET received_at = now() - random() * interval '60 days'"
            )
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute(
                "UPDATE screening_case SET received_at = "
                "datetime('now', '-' || abs(random() % 86400000) || ' seconds')"
            )
            cursor.execute("ANALYZE")


def cursor_of_page(reader, number: int) -> str:
    """The ``after`` value a reader holds on reaching page ``number`` by Next links."""
    from screening.reading.queries import worklist_page

    page = worklist_page(reader)
    for _ in range(number - 2):
        assert page.next_cursor is not None, "fewer pages than asked for"
        page = worklist_page(reader, after=page.next_cursor)
    assert page.next_cursor is not None, "fewer pages than asked for"
    return page.next_cursor


def measure(client: Client, url: str, runs: int) -> tuple[float, float]:
    client.get(url)  # warm caches and connections
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        if response.streaming:  # the whole body, as the browser waits for it
            response.getvalue()  # joins the streamed content
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


@contextmanager
def throwaway_database(keep: bool = False, reuse: bool = False) -> Iterator[None]:
    """A fresh test database on DATABASE_URL's server, dropped afterwards unless ``keep``;
    ``reuse``: the one a ``keep`` run left, as it is (seeding a million screens takes minutes)."""
    setup_test_environment()
    settings.ALLOWED_HOSTS = ["testserver"]
    # Static file names without collectstatic's manifest: the benchmark times views, not assets.
    override_settings(
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ).enable()
    old_name = connection.settings_dict["NAME"]
    if reuse:
        connection.close()
        # the name Django gives the test database (private, so not in django-stubs)
        connection.settings_dict["NAME"] = connection.creation._get_test_db_name()  # type: ignore[attr-defined]
        yield
        return
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        if not keep:
            connection.creation.destroy_test_db(old_name, verbosity=0)


def user_with_role(username: str, role: str):
    user = get_user_model().objects.create_user(username, password="bench-password-123")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def print_table(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n{title}\n")
    print(f"| {'request':<34} | {'p50 ms':>7} | {'p95 ms':>7} |")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 9}|")
    for name, p50, p95 in rows:
        print(f"| {name:<34} | {p50:>7.1f} | {p95:>7.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--explain", action="store_true", help="Print the worklist query plan")
    parser.add_argument("--keep", action="store_true", help="Keep the seeded test database")
    args = parser.parse_args()
    with throwaway_database(args.keep):
        reader = user_with_role("bench-reader", Role.RADIOLOGIST)
        started = time.perf_counter()
        seed(args.cases, reader)
        seeded = time.perf_counter() - started
        if args.explain:
            from screening.reading.queries import worklist

            print(worklist(reader)[:50].query)
            print(worklist(reader)[:50].explain(analyze=True))
        client = Client()
        client.force_login(reader)
        urls = [
            ("worklist page 1", "/worklist/"),
            ("worklist page 40 (Next x 39)", "/worklist/?after=" + cursor_of_page(reader, 40)),
            ("worklist band=high", "/worklist/?band=high"),
            ("worklist status=arbitration", "/worklist/?status=arbitration"),
            ("API worklist page 1", "/api/cases/"),
            ("API worklist page 40", "/api/cases/?after=" + cursor_of_page(reader, 40)),
            ("API worklist status=arbitration", "/api/cases/?status=arbitration"),
        ]
        print_table(
            f"Worklist latency, {args.cases:,} cases on {connection.vendor} "
            f"(seeded in {seeded:.0f} s), {args.runs} requests each, server time via Django's client",
            [(name, *measure(client, url, args.runs)) for name, url in urls],
        )


if __name__ == "__main__":
    main()
