"""STOW-RS: a PACS pushes a study's instances in parallel requests; every one is stored."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from pydicom.uid import generate_uid
from rest_framework.test import APIClient

from screening.models import Image, Study
from tests.conftest import requires_postgres
from tests.dicom_files import dicom_bytes
from tests.screening.interop.test_dicomweb import CONTENT_TYPE, URL, related

VIEWS = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]


def instances(count: int, study_uid: str) -> list[bytes]:
    """Distinct instances of one study, one body each (as a PACS pushing one per request)."""
    return [
        related(
            dicom_bytes(
                seed=100 + i,
                size=64,
                study_uid=study_uid,
                laterality=VIEWS[i % 4][0],
                view=VIEWS[i % 4][1],
                accession="ACC-PAR-1",
            )
        )
        for i in range(count)
    ]


def push(user, body: bytes) -> int:
    client = APIClient()
    client.force_authenticate(user)
    try:
        return client.post(URL, body, content_type=CONTENT_TYPE).status_code
    finally:
        connection.close()


def push_in_waves(user, bodies: list[bytes], at_a_time: int) -> list[int]:
    statuses: list[int] = []
    for start in range(0, len(bodies), at_a_time):
        wave = bodies[start : start + at_a_time]
        barrier = threading.Barrier(len(wave))

        def send(body: bytes, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            statuses.append(push(user, body))

        threads = [threading.Thread(target=send, args=(body,)) for body in wave]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return statuses


@pytest.mark.django_db(transaction=True)
def test_forty_instances_of_one_study_pushed_twenty_at_a_time_are_all_stored(admin_user):
    requires_postgres()
    statuses = push_in_waves(admin_user, instances(40, generate_uid()), at_a_time=20)
    assert statuses == [200] * 40, sorted(statuses)
    assert Study.objects.count() == 1
    assert Study.objects.get().images.count() == 40


def _pause_after_study_lookup(looked: threading.Event, go_on: threading.Event) -> Callable:
    """A query wrapper: after the first lookup of a study by its UID, wait for ``go_on``."""
    paused = False

    def wrapper(execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal paused
        result = execute(sql, params, many, context)
        lookup = sql.lstrip().startswith("SELECT") and (
            'WHERE "screening_study"."study_instance_uid" =' in sql
        )
        if lookup and not paused:
            paused = True
            looked.set()
            assert go_on.wait(30)
        return result

    return wrapper


@pytest.mark.django_db(transaction=True)
def test_an_instance_whose_study_is_created_after_its_lookup_is_added_to_it(admin_user):
    """The race the probe hit: the study is committed between one push's lookup and insert."""
    requires_postgres()
    first, second = instances(2, generate_uid())
    looked, go_on = threading.Event(), threading.Event()
    statuses: dict[str, int] = {}

    def slow_push() -> None:
        with connection.execute_wrapper(_pause_after_study_lookup(looked, go_on)):
            statuses["slow"] = push(admin_user, second)

    thread = threading.Thread(target=slow_push)
    thread.start()
    try:
        assert looked.wait(30)
        statuses["fast"] = push(admin_user, first)  # creates the study and commits
    finally:
        go_on.set()
        thread.join()
    assert statuses == {"fast": 200, "slow": 200}
    assert Study.objects.count() == 1
    assert Image.objects.filter(study=Study.objects.get()).count() == 2


@pytest.mark.django_db(transaction=True)
def test_an_instance_re_sent_while_its_first_push_is_in_flight_succeeds_every_time(admin_user):
    """Clients that time out and retry at once: every copy is answered as stored (issue 22)."""
    requires_postgres()
    body = instances(1, generate_uid())[0]
    statuses = push_in_waves(admin_user, [body] * 8, at_a_time=8)
    assert statuses == [200] * 8
    assert Image.objects.count() == 1
