"""The readers' final report out as a DICOM SR: read back with pydicom, highdicom and dcmtk,
given only for a closed case, to its readers and auditors."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Any

import highdicom as hd
import pydicom
import pytest
from django.urls import reverse

from screening.choices import AuditAction, AuditOutcome, CaseStatus, ReadKind, Role
from screening.interop import actions as interop_actions
from screening.models import AuditEvent, Case
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from screening.reading.assessment import FindingInput
from tests.factories import UserFactory, case_with_images, dicom_case_with_images, read_case

# What each reader gave (the disagreeing reads go to arbitration).
FIRST = ReadInput(
    kind=ReadKind.FIRST,
    birads_right=4,
    birads_left=3,
    density="c",
    findings=(
        FindingInput(breast="R", finding="mass", site="10", depth="middle"),
        FindingInput(breast="L", finding="calcification", site="UOQ"),
    ),
    reason="Spiculated mass",
)
SECOND = ReadInput(kind=ReadKind.SECOND, birads_right=1, birads_left=2, density="b")
ARBITRATION = ReadInput(
    kind=ReadKind.ARBITRATION,
    birads_right=5,
    birads_left=1,
    density="d",
    findings=(
        FindingInput(breast="R", finding="distortion", site="retroareolar", depth="posterior"),
    ),
)

# The same reads as the SR must code them (DICOM PS3.16: CID 6026/6027 BI-RADS, CID 6000
# composition, CID 6054 findings, CID 6019/6020 site, CID 6024 depth), written out here
# rather than taken from the module under test.
RIGHT, LEFT = "73056007", "80248007"
EXPECTED_READS = {
    "FIRSTREAD": {
        "reader": "rad1",
        "decision": "RECALL",
        "density": "129718006",  # heterogeneously dense (c)
        "birads": {RIGHT: "397144001", LEFT: "397143007"},  # 4, 3
        "findings": sorted(
            [
                ("129788004", RIGHT, ("111014", "129781005"), "C25569"),  # mass, 10h, middle
                ("309587003", LEFT, ("111048", "76365002"), None),  # calcification, UOQ
            ],
            key=repr,
        ),
    },
    "SECONDREAD": {
        "reader": "rad2",
        "decision": "NORECALL",
        "density": "129717001",  # scattered fibroglandular (b)
        "birads": {RIGHT: "397140005", LEFT: "397141009"},  # 1, 2
        "findings": [],
    },
    "ARBITRATION": {
        "reader": "arb1",
        "decision": "RECALL",
        "density": "129719003",  # extremely dense (d)
        "birads": {RIGHT: "397145000", LEFT: "397140005"},  # 5, 1
        # distortion, subareolar (retroareolar), posterior
        "findings": [("129792006", RIGHT, ("111014", "129784002"), "255551008")],
    },
}


def code(item: Any) -> str:
    return item.ConceptNameCodeSequence[0].CodeValue


def value(item: Any) -> str:
    return item.ConceptCodeSequence[0].CodeValue


def children(item: Any, concept: str) -> list[Any]:
    return [child for child in item.get("ContentSequence", []) if code(child) == concept]


def one(item: Any, concept: str) -> Any:
    found = children(item, concept)
    assert len(found) == 1, concept
    return found[0]


def birads(item: Any) -> dict[str, str]:
    """Each Assessment Category (DCM 111005) by the breast its Finding Site names."""
    return {value(one(c, "363698007")): value(c) for c in children(item, "111005")}


def read_back(item: Any) -> dict[str, Any]:
    """One read's container as the SR codes it."""
    findings = []
    for finding in children(item, "121071"):
        site = [c for c in finding.ContentSequence if code(c) in ("111014", "111048")]
        depth = children(finding, "111020")
        findings.append(
            (
                value(finding),
                value(one(finding, "363698007")),
                (code(site[0]), value(site[0])),
                value(depth[0]) if depth else None,
            )
        )
    return {
        "reader": one(item, "121008").PersonName.family_name,
        "decision": value(one(item, "SCRDECISION")),
        "density": value(one(item, "129715009")),
        "birads": birads(item),
        "findings": sorted(findings, key=repr),
    }


def reads_in(sr: Any) -> dict[str, dict[str, Any]]:
    """Each read's values by its kind; findings in a stable order (what, not where, matters)."""
    return {value(one(r, "READKIND")): read_back(r) for r in children(sr, "SCRREAD")}


def arbitrated_case() -> Case:
    """A DICOM case read first (recall), second (no recall), then arbitrated (recall)."""
    case = dicom_case_with_images(images=2)
    rad1 = UserFactory(role=Role.RADIOLOGIST, username="rad1")
    rad2 = UserFactory(role=Role.RADIOLOGIST, username="rad2")
    arb1 = UserFactory(role=Role.ARBITRATOR, username="arb1")
    for reader, data in ((rad1, FIRST), (rad2, SECOND), (arb1, ARBITRATION)):
        reading_actions.submit_read(reader, case.pk, data)
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED
    return case


def parse(content: bytes) -> Any:
    return pydicom.dcmread(io.BytesIO(content))


@pytest.fixture
def closed(db) -> Case:
    return arbitrated_case()


def test_the_report_holds_each_read_exactly_as_its_reader_gave_it(closed):
    sr = parse(interop_actions.build_read_report(closed).content)
    assert code(sr) == "111400"  # Breast Imaging Report
    assert reads_in(sr) == EXPECTED_READS


def test_the_overall_assessment_is_the_arbitration_that_closed_the_case(closed):
    sr = parse(interop_actions.build_read_report(closed).content)
    overall = one(sr, "111413")
    assert value(one(overall, "SCRDECISION")) == "RECALL"
    assert value(one(overall, "CLOSEDBY")) == "ARBITRATED"
    assert birads(overall) == {RIGHT: "397145000", LEFT: "397140005"}


def test_agreeing_reads_close_with_the_second_reads_categories(db):
    case = dicom_case_with_images(images=1)
    first, second = UserFactory(role=Role.RADIOLOGIST), UserFactory(role=Role.RADIOLOGIST)
    read_case(first, case.pk, recall=True)
    read_case(second, case.pk, recall=True)
    case.refresh_from_db()
    overall = one(parse(interop_actions.build_read_report(case).content), "111413")
    assert value(one(overall, "CLOSEDBY")) == "AGREED"
    assert value(one(overall, "SCRDECISION")) == "RECALL"
    assert birads(overall) == {RIGHT: "397144001", LEFT: "397140005"}  # 4, 1 (read_input)


def test_the_report_lands_in_the_stored_study_and_references_its_films(closed):
    sr = parse(interop_actions.build_read_report(closed).content)
    study = closed.studies.get()
    stored = set(study.images.values_list("sop_instance_uid", flat=True))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == study.study_instance_uid
    # The woman's patient module as her films carry it: the pseudonym, or in clinical mode
    # her own patient ID (the report lands in her study on the PACS).
    clinical = study.identity_mode == "clinical"
    assert sr.PatientID == (study.patient_id if clinical else closed.patient.pseudonym)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == study.study_instance_uid
    referenced = {
        i.ReferencedSOPInstanceUID
        for series in evidence.ReferencedSeriesSequence
        for i in series.ReferencedSOPSequence
    }
    library = one(sr, "111028").ContentSequence
    assert referenced == stored
    assert {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in library} == stored
    assert (sr.CompletionFlag, sr.PreliminaryFlag) == ("COMPLETE", "FINAL")


def test_building_it_twice_gives_the_same_instance(closed):
    first = parse(interop_actions.build_read_report(closed).content)
    again = parse(interop_actions.build_read_report(closed).content)
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (
        again.SOPInstanceUID,
        again.SeriesInstanceUID,
    )


def test_highdicom_reads_it_back_as_a_valid_comprehensive_sr(closed):
    sr = hd.sr.srread(io.BytesIO(interop_actions.build_read_report(closed).content))
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    assert sr.ContentSequence and code(sr) == "111400"


@pytest.mark.parametrize("tool", ["dcmdump", "dsrdump"])
def test_dcmtk_prints_it_without_error(closed, tmp_path, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"dcmtk's {tool} is not installed (apt install dcmtk)")
    path = tmp_path / "report.dcm"
    path.write_bytes(interop_actions.build_read_report(closed).content)
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "E:" not in done.stderr and "W:" not in done.stderr, done.stderr
    assert "Breast Imaging Report" in done.stdout


def test_the_second_reader_gets_nothing_of_the_first_read(client, api, db):
    case = dicom_case_with_images(images=1)
    first = UserFactory(role=Role.RADIOLOGIST, username="firstreader")
    second = UserFactory(role=Role.RADIOLOGIST, username="secondreader")
    reading_actions.submit_read(first, case.pk, FIRST)
    client.force_login(second)
    api.force_authenticate(second)
    page = client.get(reverse("case-read-report", args=[case.pk]))
    endpoint = api.get(reverse("api-case-read-report", args=[case.pk]))
    for response in (page, endpoint):
        assert response.status_code == 409
        assert response["Content-Type"] != "application/dicom"
        body = response.content.decode()
        assert "firstreader" not in body and "recall" not in body.lower()
        assert "BI-RADS" not in body and "mass" not in body.lower()
    case_page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert reverse("case-read-report", args=[case.pk]) not in case_page


@pytest.mark.parametrize("status", [CaseStatus.READY, CaseStatus.FIRST_READ_DONE])
def test_nobody_takes_the_report_of_an_open_case(client, auditor, status):
    case = dicom_case_with_images(images=1)
    reader = UserFactory(role=Role.RADIOLOGIST)
    if status == CaseStatus.FIRST_READ_DONE:
        read_case(reader, case.pk, recall=True)
    for user in (reader, auditor):
        client.force_login(user)
        assert client.get(reverse("case-read-report", args=[case.pk])).status_code == 409
    refused = AuditEvent.objects.filter(action=AuditAction.EXPORT, outcome=AuditOutcome.FAILURE)
    assert refused.count() == 2
    assert all(e.detail["what"] == "read_report_sr" for e in refused)


def test_its_readers_and_auditors_take_it_and_each_take_is_audited(client, api, closed, auditor):
    for username in ("rad1", "rad2", "arb1"):
        client.force_login(UserFactory._meta.model.objects.get(username=username))
        response = client.get(reverse("case-read-report", args=[closed.pk]))
        assert response.status_code == 200
        assert response["Content-Type"] == "application/dicom"
        assert f"read-report-case-{closed.pk}.dcm" in response["Content-Disposition"]
    api.force_authenticate(auditor)
    response = api.get(reverse("api-case-read-report", args=[closed.pk]))
    assert reads_in(parse(response.content)) == EXPECTED_READS
    taken = AuditEvent.objects.filter(
        action=AuditAction.EXPORT, outcome=AuditOutcome.SUCCESS, object_id=str(closed.pk)
    )
    assert taken.count() == 4
    assert {e.actor_name for e in taken} == {"rad1", "rad2", "arb1", auditor.username}
    assert all(e.detail == {"what": "read_report_sr", "case_id": closed.pk} for e in taken)


def test_a_radiologist_who_read_nothing_of_the_case_is_refused(client, closed):
    client.force_login(UserFactory(role=Role.RADIOLOGIST, username="bystander"))
    response = client.get(reverse("case-read-report", args=[closed.pk]))
    assert response.status_code == 403
    refused = AuditEvent.objects.get(action=AuditAction.EXPORT, outcome=AuditOutcome.FAILURE)
    assert refused.actor_name == "bystander"


def test_a_case_not_uploaded_as_dicom_has_no_report(client, db):
    case = case_with_images(images=1)
    first, second = UserFactory(role=Role.RADIOLOGIST), UserFactory(role=Role.RADIOLOGIST)
    read_case(first, case.pk, recall=False)
    read_case(second, case.pk, recall=False)
    client.force_login(first)
    assert client.get(reverse("case-read-report", args=[case.pk])).status_code == 404
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert reverse("case-read-report", args=[case.pk]) not in page


def test_the_closed_case_page_links_its_report_for_a_reader(client, closed):
    client.force_login(UserFactory._meta.model.objects.get(username="rad2"))
    page = client.get(reverse("case-detail", args=[closed.pk])).content.decode()
    assert reverse("case-read-report", args=[closed.pk]) in page


def test_a_read_from_before_per_breast_reading_keeps_its_one_case_category(db):
    case = dicom_case_with_images(images=1)
    first, second = UserFactory(role=Role.RADIOLOGIST), UserFactory(role=Role.RADIOLOGIST)
    read_case(first, case.pk, recall=False)
    read_case(second, case.pk, recall=False)
    case.reads.update(birads_right=None, birads_left=None, birads=2)
    case.refresh_from_db()
    sr = parse(interop_actions.build_read_report(case).content)
    for item in [one(sr, "111413"), *children(sr, "SCRREAD")]:
        category = one(item, "111005")
        assert value(category) == "397141009"  # 2 - Benign, for the whole case
        assert "ContentSequence" not in category  # no breast claimed


def test_a_long_user_name_fits_the_person_name_and_is_kept_whole_as_login(db):
    case = dicom_case_with_images(images=1)
    long_name = "r" * 150  # Django allows 150 characters; a DICOM name component 64
    read_case(UserFactory(role=Role.RADIOLOGIST, username=long_name), case.pk, recall=False)
    read_case(UserFactory(role=Role.RADIOLOGIST), case.pk, recall=False)
    case.refresh_from_db()
    sr = parse(interop_actions.build_read_report(case).content)
    first = next(r for r in children(sr, "SCRREAD") if value(one(r, "READKIND")) == "FIRSTREAD")
    assert one(first, "121008").PersonName.family_name == "r" * 63
    assert one(first, "128774").TextValue == long_name  # Person Observer's Login Name
