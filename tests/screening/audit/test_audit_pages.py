"""The auditor's pages and exports: what they show, what they record, what they refuse."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from screening import events
from screening.audit import exports
from screening.choices import AuditAction, Outcome
from screening.models import AuditEvent, ModelVersion
from tests.factories import ModelVersionFactory, N, R, screen


@pytest.fixture
def version(db):
    return ModelVersionFactory(threshold=0.5, is_active=True)


@pytest.fixture
def screens(version, radiologist, radiologist2):
    pair = [radiologist, radiologist2]
    cases = [
        screen(version, 0.9, [R, R], pair, outcome=Outcome.MALIGNANT),
        screen(version, 0.8, [N, N], pair, outcome=Outcome.NORMAL),  # AI recall, readers no
        screen(version, 0.3, [R, R], pair, outcome=Outcome.MALIGNANT),  # readers recall, AI no
        screen(version, 0.2, [N, N], pair, outcome=Outcome.BENIGN),
        screen(version, 0.6, [R, N], pair),  # arbitration pending, outcome unknown
    ]
    return cases


def rows_of(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.getvalue().decode())))


def test_dashboard_shows_figures_and_plots(client, auditor, screens):
    client.force_login(auditor)
    response = client.get(reverse("audit-dashboard"))
    html = response.content.decode()
    assert response.status_code == 200
    # Cancers scored 0.9 and 0.3, non-cancers 0.8 and 0.2: 3 of 4 pairs ranked right.
    assert "AUC <strong>0.750</strong>" in html
    assert html.count('src="data:image/svg+xml;base64,') == 4  # ROC, thresholds, confusion, trend
    for heading in ["Against outcomes", "Agreement", "Readers", "Workflow", "Model versions"]:
        assert heading in html
    assert "rad1" in html and "rad2" in html


def test_dashboard_with_no_versions_and_no_cases(client, auditor):
    client.force_login(auditor)
    response = client.get(reverse("audit-dashboard"))
    assert response.status_code == 200
    assert b"no model version registered" in response.content


def test_dashboard_figures_are_kept_until_recomputed(
    client, auditor, screens, version, radiologist
):
    client.force_login(auditor)
    assert b"5 cases in the filter" in client.get(reverse("audit-dashboard")).content
    screen(version, 0.7, [R], [radiologist])
    kept = client.get(reverse("audit-dashboard")).content
    assert b"5 cases in the filter" in kept and b"Recompute now" in kept
    fresh = client.get(reverse("audit-dashboard"), {"refresh": "1"}).content
    assert b"6 cases in the filter" in fresh
    assert b"6 cases in the filter" in client.get(reverse("audit-dashboard")).content


def test_a_version_without_results_says_so(client, auditor, screens):
    unused = ModelVersionFactory()
    client.force_login(auditor)
    response = client.get(reverse("audit-dashboard"), {"model_version": unused.pk})
    assert b"has no results on these cases" in response.content


def test_what_if_threshold_shows_but_changes_nothing(client, auditor, screens, version):
    client.force_login(auditor)
    response = client.get(reverse("audit-dashboard"), {"threshold": "0.25"})
    assert b"0.25 (what-if)" in response.content
    assert ModelVersion.objects.get(pk=version.pk).threshold == 0.5


def test_a_bad_filter_is_explained_not_applied(client, auditor, screens):
    client.force_login(auditor)
    params = {"date_from": "2026-02-01", "date_to": "2026-01-01", "threshold": "7"}
    response = client.get(reverse("audit-dashboard"), params)
    assert response.status_code == 200
    assert b"The start date is after the end date." in response.content
    assert b"The filter was not applied." in response.content


def test_discordant_list_links_each_disagreement(client, auditor, screens):
    client.force_login(auditor)
    html = client.get(reverse("audit-discordant")).content.decode()
    for case in (screens[1], screens[2]):
        assert reverse("case-detail", args=[case.pk]) in html
    assert reverse("case-detail", args=[screens[0].pk]) not in html
    only = client.get(reverse("audit-discordant"), {"direction": "ai_recall"}).content.decode()
    assert reverse("case-detail", args=[screens[1].pk]) in only
    assert reverse("case-detail", args=[screens[2].pk]) not in only


@pytest.mark.parametrize(
    ("table", "first_column", "rows"),
    [
        ("cases", "case_id", 5),
        ("agreement", "rater_a", 6),
        ("performance", "decision_by", 4),
        ("readers", "reader", 2),
        ("workflow", "measure", 9),
        ("thresholds", "ai_threshold", 19),
        ("versions", "model_version_id", 1),
        ("discordant", "case_id", 2),
        ("trend", "week_starting", 1),
        ("roc", "false_positive_rate", None),
    ],
)
def test_each_table_exports_as_csv_and_is_audited(
    client, auditor, screens, version, table, first_column, rows
):
    client.force_login(auditor)
    response = client.get(reverse("audit-export", args=[table]), {"band": ""})
    content = rows_of(response)
    assert content[0][0] == first_column
    if rows is not None:
        assert len(content) - 1 == rows
    event = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert (event.actor, event.detail["what"], event.detail["rows"]) == (
        auditor,
        table,
        len(content) - 1,
    )
    assert event.detail["filters"]["model_version_id"] == version.pk


def test_case_export_is_pseudonymous(client, auditor, screens):
    client.force_login(auditor)
    content = client.get(reverse("audit-export", args=["cases"])).getvalue().decode()
    study = screens[0].studies.get()
    assert screens[0].patient.pseudonym in content
    assert study.accession_number not in content


def test_exported_figures_match_the_page(client, auditor, screens):
    client.force_login(auditor)
    content = rows_of(client.get(reverse("audit-export", args=["performance"])))
    by_name = {row[0]: dict(zip(content[0], row, strict=True)) for row in content[1:]}
    ai = by_name["AI"]
    assert (ai["screens"], ai["recalls"], ai["tp"], ai["fp"], ai["fn"], ai["tn"]) == (
        "5",
        "3",
        "1",
        "1",
        "1",
        "1",
    )
    assert ai["sensitivity"] == "0.5000" and ai["recall_rate"] == "0.6000"
    assert by_name["Final decision"]["screens"] == "4"  # the arbitration case is still open


def test_unknown_table_is_404_and_not_recorded(client, auditor):
    client.force_login(auditor)
    assert client.get(reverse("audit-export", args=["passwords"])).status_code == 404
    assert not AuditEvent.objects.filter(action=AuditAction.EXPORT).exists()


def test_audit_trail_filters_by_user_action_case_and_date(client, auditor, screens, radiologist):
    client.force_login(auditor)
    case = screens[0]
    url = reverse("audit-trail")
    by_case = client.get(url, {"case": case.pk}).context["page"].object_list
    assert {e.action for e in by_case} == {AuditAction.READ_RECORDED}
    assert all(e.object_id == str(case.pk) for e in by_case)
    by_user = client.get(url, {"actor": radiologist.pk}).context["page"].object_list
    assert by_user and all(e.actor == radiologist for e in by_user)
    none = client.get(url, {"date_to": "2000-01-01"}).context["page"].object_list
    assert list(none) == []
    only = client.get(url, {"action": AuditAction.READ_RECORDED}).context["page"].object_list
    assert len(only) == 10  # first and second read of each of the 5 cases
    assert client.post(url).status_code == 405


def test_audit_trail_by_case_includes_events_about_its_study(client, auditor, admin_user, screens):
    case = screens[0]
    events.study_uploaded(admin_user, case.studies.get(), [])
    client.force_login(auditor)
    found = client.get(reverse("audit-trail"), {"case": case.pk}).context["page"].object_list
    assert AuditAction.STUDY_UPLOADED in {e.action for e in found}


def test_audit_export_defuses_formulas_and_is_itself_audited(client, admin_user):
    events.login_failed('=HYPERLINK("http://evil")')
    client.force_login(admin_user)
    content = rows_of(client.get(reverse("audit-trail-export"), {"action": "login_failed"}))
    assert content[1][2] == '\'=HYPERLINK("http://evil")'
    event = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert event.detail == {"what": "audit_trail", "rows": 1, "filters": {"action": "login_failed"}}


def test_nothing_on_the_auditor_pages_edits_an_event(client, auditor, screens):
    client.force_login(auditor)
    before = AuditEvent.objects.count()
    for name in ("audit-dashboard", "audit-discordant", "audit-trail"):
        assert client.post(reverse(name)).status_code == 405
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("table", "params"),
    [
        ("cases", {"date_from": "2099-01-01"}),
        ("cases", {"date_to": "1990-01-01"}),
        ("discordant", {"date_from": "2099-01-01"}),
        ("discordant", {"direction": "ai_recall", "date_to": "1990-01-01"}),
    ],
)
def test_an_empty_selection_exports_a_header_alone(client, auditor, screens, table, params):
    client.force_login(auditor)
    content = rows_of(client.get(reverse("audit-export", args=[table]), params))
    assert content == [exports.CASE_HEADER]
    assert AuditEvent.objects.get(action=AuditAction.EXPORT).detail["rows"] == 0


def test_the_discordant_export_before_any_disagreement_is_a_header(
    client, auditor, version, radiologist, radiologist2
):
    screen(version, 0.9, [R, R], [radiologist, radiologist2])
    client.force_login(auditor)
    content = rows_of(client.get(reverse("audit-export", args=["discordant"])))
    assert content == [exports.CASE_HEADER]


def test_an_export_with_a_bad_filter_is_refused_not_widened(client, auditor, screens):
    """A filter the form refuses would otherwise export every case the auditor did not ask for."""
    client.force_login(auditor)
    response = client.get(reverse("audit-export", args=["discordant"]), {"direction": "ai_missed"})
    assert response.status_code == 400
    assert b"direction" in response.content
    assert not AuditEvent.objects.filter(action=AuditAction.EXPORT).exists()


@pytest.mark.parametrize(
    "params",
    [
        {"date_to": "9999-12-31"},
        {"date_from": "0001-01-01"},
        {"date_from": "0001-01-01", "date_to": "9999-12-31"},
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_dates_at_the_calendars_edges_bound_nothing(
    client, auditor, screens, settings, params, zone
):
    settings.TIME_ZONE = zone
    client.force_login(auditor)
    page = client.get(reverse("audit-dashboard"), {**params, "refresh": "1"})
    assert page.status_code == 200
    assert b"5 cases in the filter" in page.content
    assert len(rows_of(client.get(reverse("audit-export", args=["cases"]), params))) == 6
    discordant = client.get(reverse("audit-discordant"), params)
    assert discordant.context["count"] == 2


def test_a_start_on_the_calendars_last_day_selects_nothing(client, auditor, screens):
    client.force_login(auditor)
    content = rows_of(
        client.get(reverse("audit-export", args=["cases"]), {"date_from": "9999-12-31"})
    )
    assert content == [exports.CASE_HEADER]


def test_an_audit_trail_export_with_a_bad_filter_is_refused(client, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("audit-trail-export"), {"case": "seven"})
    assert response.status_code == 400
    assert b"case: Enter a whole number." in response.content
    assert not AuditEvent.objects.filter(action=AuditAction.EXPORT).exists()
