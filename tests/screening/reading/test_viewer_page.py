"""The case page's viewer: the hanging protocol, the priors it lists and what of them it shows."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from screening.choices import CaseStatus
from screening.reading.hanging import hang
from tests.factories import (
    ImageFactory,
    ModelVersionFactory,
    StudyFactory,
    UserFactory,
    dicom_screen,
    read_case,
    score_case,
    unvalidated_evidence,
    validated_evidence,
)

pytestmark = pytest.mark.django_db


def slots_on_page(html: str, group: str = "current") -> list[str]:
    return re.findall(rf'class="panel {group}[^"]*" data-image="\d+" data-slot="([A-Z]*)"', html)


def priors_section(html: str) -> str:
    found = re.search(r'<ul class="priors" id="priors">(.*?)</ul>', html, re.S)
    return found.group(1) if found else ""


def test_the_four_views_hang_rcc_lcc_rmlo_lmlo_whatever_the_upload_order(client, radiologist):
    study = StudyFactory()
    for side, view in (("L", "MLO"), ("R", "MLO"), ("L", "CC"), ("R", "CC"), ("R", "ML")):
        ImageFactory(study=study, laterality=side, view=view)
    client.force_login(radiologist)
    assert study.case is not None
    html = client.get(reverse("case-detail", args=[study.case.pk])).content.decode()
    assert slots_on_page(html) == ["RCC", "LCC", "RMLO", "LMLO", ""]  # the extra view follows
    assert re.findall(r'class="vp-label">([^<]*)<', html)[:4] == ["R CC", "L CC", "R MLO", "L MLO"]


def test_a_second_film_of_a_view_and_a_film_without_side_follow_the_four() -> None:
    study = StudyFactory()
    first = ImageFactory(study=study, laterality="R", view="CC")
    again = ImageFactory(study=study, laterality="R", view="CC")
    unknown = ImageFactory(study=study, laterality="", view="")
    panels = hang([(unknown, None), (again, None), (first, None)])
    assert [(p.image, p.slot) for p in panels] == [(first, "RCC"), (again, ""), (unknown, "")]


def test_dicom_films_load_through_wado_rs_and_others_through_the_image_view(client, radiologist):
    case = dicom_screen(size=128)
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    study_uid = case.studies.get().study_instance_uid
    assert html.count(f'data-kind="dicom" data-study="{study_uid}"') == 4
    assert 'data-dicomweb="/dicomweb"' in html and 'src="/static/viewer/viewer.js"' in html


def test_the_womans_earlier_screen_is_listed_and_hung_beneath_with_its_date(client, radiologist):
    prior = dicom_screen(study_date="20220310", seed=400, size=128)
    current = dicom_screen(study_date="20240315", seed=300, size=128)
    dicom_screen(patient_id="SOMEONE-ELSE", study_date="20210101", seed=500, size=128)
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[current.pk])).content.decode()
    assert "2022-03-10" in priors_section(html) and f"case #{prior.pk}" in priors_section(html)
    assert "2021-01-01" not in html  # another woman's screen is no prior
    assert slots_on_page(html, "prior") == ["RCC", "LCC", "RMLO", "LMLO"]
    assert f'data-compare-case="{prior.pk}"' in html
    assert "Prior · 2022-03-10" in html
    # A later screen is not a prior of an earlier one.
    earlier = client.get(reverse("case-detail", args=[prior.pk])).content.decode()
    assert 'id="priors"' not in earlier


def test_a_prior_still_being_read_stays_blind_to_another_reader(client, radiologist, radiologist2):
    prior = dicom_screen(study_date="20220310", seed=400, size=128)
    current = dicom_screen(study_date="20240315", seed=300, size=128)
    read_case(radiologist, prior.pk, recall=True)
    client.force_login(radiologist2)
    listed = priors_section(client.get(reverse("case-detail", args=[current.pk])).content.decode())
    assert "2022-03-10" in listed
    assert "First read" not in listed and "Recall" not in listed and "final decision" not in listed


def test_a_closed_prior_shows_its_reads_and_final_decision(client, radiologist, radiologist2):
    prior = dicom_screen(study_date="20220310", seed=400, size=128)
    current = dicom_screen(study_date="20240315", seed=300, size=128)
    read_case(radiologist, prior.pk, recall=False)
    read_case(radiologist2, prior.pk, recall=False)  # agreeing reads close it
    client.force_login(UserFactory(username="third", role="radiologist"))
    listed = priors_section(client.get(reverse("case-detail", args=[current.pk])).content.decode())
    assert "final decision no recall" in listed
    assert "First read" in listed and "Second read" in listed


def test_every_prior_is_listed_with_its_date_and_the_reader_picks_which_hangs(client, radiologist):
    oldest = dicom_screen(study_date="20200310", seed=500, size=128)
    latest = dicom_screen(study_date="20220310", seed=400, size=128)
    current = dicom_screen(study_date="20240315", seed=300, size=128)
    client.force_login(radiologist)
    url = reverse("case-detail", args=[current.pk])
    html = client.get(url).content.decode()
    listed = priors_section(html)
    assert listed.index("2022-03-10") < listed.index("2020-03-10")  # newest first
    assert f'data-compare-case="{latest.pk}"' in html  # the latest hangs unless one is picked
    assert f'href="?prior={oldest.pk}"' in listed and f'href="?prior={latest.pk}"' not in listed
    picked = client.get(url, {"prior": oldest.pk}).content.decode()
    assert f'data-compare-case="{oldest.pk}"' in picked
    assert set(re.findall(r'class="panel prior[^"]*"[^>]*data-case="(\d+)"', picked)) == {
        str(oldest.pk)
    }
    assert f'href="?prior={latest.pk}"' in priors_section(picked)
    # Not one of this woman's priors (the current case itself, nonsense): the latest hangs.
    for other in (current.pk, "x"):
        shown = client.get(url, {"prior": other}).content.decode()
        assert f'data-compare-case="{latest.pk}"' in shown


def overlay_controls(html: str) -> str:
    found = re.search(r'<span class="overlay-controls[^"]*" id="overlay-controls"[^>]*>', html)
    assert found, "no overlay controls in the page"
    return found.group(0)


def test_no_overlay_controls_when_the_versions_heatmaps_and_marks_fail_their_gates(
    client, radiologist
):
    case = dicom_screen(size=128)
    score_case(case, 0.9, ModelVersionFactory(is_active=True, evidence=unvalidated_evidence()))
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert " hidden" in overlay_controls(html) and 'class="heatmap"' not in html


def test_the_overlay_controls_are_offered_when_a_heatmap_may_be_drawn(client, radiologist):
    case = dicom_screen(size=128)
    score_case(case, 0.9, ModelVersionFactory(is_active=True, evidence=validated_evidence()))
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    tag = overlay_controls(html)
    assert " hidden" not in tag and "unavailable" not in tag and 'class="heatmap"' in html


def test_the_overlay_controls_keep_their_room_unshown_while_the_ai_may_still_come(
    client, radiologist
):
    case = dicom_screen(size=128, status=CaseStatus.AWAITING_AI)
    client.force_login(radiologist)
    tag = overlay_controls(client.get(reverse("case-detail", args=[case.pk])).content.decode())
    assert "unavailable" in tag and " hidden" not in tag
