"""Findings marked on the film (issue 24): a read's findings carry the film and the mark's
pixel coordinates through the API, the case page and the readers' DICOM SR; a mark off the
film, on another case's film or on the other breast's film is refused; the blind second
reader is sent none of the first reader's marks, the arbitrator both readers'."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pydicom
import pytest
from django.urls import reverse

from screening.choices import CaseStatus, ReadKind, Role
from screening.interop import actions as interop_actions
from screening.models import Finding
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from screening.reading.assessment import FindingInput, Mark
from tests.factories import UserFactory, case_with_images, dicom_case_with_images

pytestmark = pytest.mark.django_db


def film(case, side: str = "R"):
    """One of the case's films, said to be of ``side`` (52×64 pixels from the factory)."""
    image = case.studies.get().images.order_by("pk").first()
    image.laterality = side
    image.save(update_fields=["laterality"])
    return image


def payload(kind: str, findings: list[dict]) -> dict:
    return {"kind": kind, "birads_right": 4, "birads_left": 1, "density": "b",
            "findings": findings, "reason": "Marked"}  # fmt: skip


def mass(image_id: int, shape: str = "point", points=((10.5, 20.25),)) -> dict:
    mark = {"image": image_id, "shape": shape, "points": [list(p) for p in points]}
    return {"breast": "R", "finding": "mass", "site": "10", "mark": mark}


def post_read(api, user, case, findings):
    api.force_authenticate(user)
    return api.post(
        reverse("api-case-reads", args=[case.pk]), payload("first", findings), format="json"
    )


def test_the_api_stores_each_marks_film_and_coordinates_and_returns_them(api, radiologist):
    case = case_with_images(score=0.7)
    image = film(case)
    ellipse = ((5, 30), (25, 30), (15, 22), (15, 38))
    sent = [
        mass(image.pk),
        mass(image.pk, "ellipse", ellipse),
        {**mass(image.pk, "arrow", ((40, 50), (30, 40))), "finding": "calcification"},
    ]
    answer = post_read(api, radiologist, case, sent)
    assert answer.status_code == 201, answer.json()
    stored = [(f.image_id, f.mark_shape, f.mark_points) for f in Finding.objects.order_by("pk")]
    assert stored == [
        (image.pk, "point", [[10.5, 20.25]]),
        (image.pk, "ellipse", [[5, 30], [25, 30], [15, 22], [15, 38]]),
        (image.pk, "arrow", [[40, 50], [30, 40]]),
    ]
    returned = [f["mark"] for f in answer.json()["findings"]]
    assert returned == [{"image": image.pk, "shape": s, "points": p} for _, s, p in stored]
    detail = api.get(reverse("api-case-detail", args=[case.pk])).json()
    assert [f["mark"] for f in detail["reads"][0]["findings"]] == returned


def test_a_finding_without_a_mark_is_still_taken_and_says_so(api, radiologist):
    case = case_with_images(score=0.7)
    answer = post_read(api, radiologist, case, [{"breast": "R", "finding": "mass", "site": "10"}])
    assert answer.status_code == 201
    assert answer.json()["findings"][0]["mark"] is None


@pytest.mark.parametrize(
    ("points", "shape"),
    [
        (((53, 10),), "point"),  # past the film's 52 columns
        (((10, -0.5),), "point"),
        (((10, 64.01),), "point"),
        (((1, 1), (2, 2)), "point"),  # a point is one point
        (((1, 1),), "arrow"),
        (((1, 1), (2, 2), (3, 3)), "ellipse"),
    ],
)
def test_a_mark_off_the_film_or_of_the_wrong_shape_is_refused(api, radiologist, points, shape):
    case = case_with_images(score=0.7)
    answer = post_read(api, radiologist, case, [mass(film(case).pk, shape, points)])
    assert answer.status_code == 400
    assert Finding.objects.count() == 0
    assert case.reads.count() == 0


def test_a_point_on_the_films_far_edge_is_on_it(api, radiologist):
    case = case_with_images(score=0.7)
    answer = post_read(api, radiologist, case, [mass(film(case).pk, "point", ((52, 64),))])
    assert answer.status_code == 201


def test_a_mark_on_another_cases_film_is_refused(api, radiologist):
    case, other = case_with_images(score=0.7), case_with_images(score=0.7)
    answer = post_read(api, radiologist, case, [mass(film(other).pk)])
    assert answer.status_code == 400
    assert "not one of this case's" in answer.json()["detail"]
    assert case.reads.count() == 0


def test_a_right_finding_marked_on_a_left_film_is_refused(api, radiologist):
    case = case_with_images(score=0.7)
    answer = post_read(api, radiologist, case, [mass(film(case, side="L").pk)])
    assert answer.status_code == 400
    assert "film of the other" in answer.json()["detail"]


def form_read(image_id: int, **extra: str) -> dict:
    mark = json.dumps({"image": image_id, "shape": "point", "points": [[12, 30]]})
    return {"kind": "first", "birads_right": "4", "birads_left": "1", "density": "b",
            "finding_R": "mass", "site_R": "UOQ", "mark_R": mark, "reason": "r", **extra}  # fmt: skip


def test_the_page_records_several_findings_per_breast_each_with_its_mark(client, radiologist):
    case = case_with_images(score=0.7)
    image = film(case)
    second = json.dumps({"image": image.pk, "shape": "arrow", "points": [[1, 2], [3, 4]]})
    client.force_login(radiologist)
    sent = form_read(image.pk, finding_R_2="calcification", site_R_2="retroareolar", mark_R_2=second,
                     finding_R_3="asymmetry", site_R_3="LIQ")  # fmt: skip
    answer = client.post(reverse("case-read", args=[case.pk]), sent)
    assert answer.status_code == 302
    stored = [
        (f.finding, f.site, f.image_id, f.mark_shape, f.mark_points)
        for f in Finding.objects.order_by("pk")
    ]
    assert stored == [
        ("mass", "UOQ", image.pk, "point", [[12.0, 30.0]]),
        ("calcification", "retroareolar", image.pk, "arrow", [[1.0, 2.0], [3.0, 4.0]]),
        ("asymmetry", "LIQ", None, "", []),
    ]


def test_the_page_refuses_a_mark_off_the_film_and_keeps_the_read_on_the_form(client, radiologist):
    case = case_with_images(score=0.7)
    image = film(case)
    client.force_login(radiologist)
    off = json.dumps({"image": image.pk, "shape": "point", "points": [[999, 30]]})
    answer = client.post(reverse("case-read", args=[case.pk]), form_read(image.pk, mark_R=off))
    assert answer.status_code == 400
    assert "outside its film" in answer.content.decode()
    assert case.reads.count() == 0


def test_the_page_refuses_a_mark_that_says_nothing_it_shows(client, radiologist):
    case = case_with_images(score=0.7)
    image = film(case)
    client.force_login(radiologist)
    answer = client.post(
        reverse("case-read", args=[case.pk]), form_read(image.pk, finding_R="", site_R="")
    )
    assert answer.status_code == 400
    assert "Say what the mark on the right film shows" in answer.content.decode()


def test_a_draft_keeps_the_marks_of_a_read_in_progress(client, radiologist):
    case = case_with_images(score=0.7)
    image = film(case)
    client.force_login(radiologist)
    mark = form_read(image.pk)["mark_R"]
    kept = client.post(reverse("case-draft", args=[case.pk]), {"finding_R": "mass", "mark_R": mark})
    assert kept.status_code == 200
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert 'name="mark_R"' in page and json.dumps(json.loads(mark)).replace('"', "&quot;") in page


# --- Blind reading: the marks go only where the reads go ---------------------------------


def marked_first_read(case, reader):
    image = film(case)
    point = Mark(image.pk, "point", ((11.0, 22.0),))
    findings = (FindingInput("R", "mass", "10", mark=point),)
    data = ReadInput(kind=ReadKind.FIRST, birads_right=4, birads_left=1, density="b",
                     findings=findings, reason="r")  # fmt: skip
    reading_actions.submit_read(reader, case.pk, data)
    return image


def marked_second_read(case, reader, image) -> None:
    arrow = Mark(image.pk, "arrow", ((40.0, 50.0), (30.0, 33.0)))
    findings = (FindingInput("R", "distortion", "UIQ", mark=arrow),)
    data = ReadInput(kind=ReadKind.SECOND, birads_right=2, birads_left=1, density="b",
                     findings=findings, reason="r")  # fmt: skip
    reading_actions.submit_read(reader, case.pk, data)


def page_marks(client, user, case) -> list[dict]:
    """The marks the case page sends its viewer (its #film-marks JSON), and the page."""
    client.force_login(user)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    start = page.index('<script id="film-marks" type="application/json">') + len(
        '<script id="film-marks" type="application/json">'
    )
    return json.loads(page[start : page.index("</script>", start)])


def test_the_blind_second_reader_is_sent_none_of_the_first_readers_marks(
    client, api, radiologist, radiologist2
):
    case = case_with_images(score=0.7)
    marked_first_read(case, radiologist)
    assert page_marks(client, radiologist2, case) == []
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert "11.0, 22.0" not in page and "[11.0, 22.0]" not in page
    api.force_authenticate(radiologist2)
    body = api.get(reverse("api-case-detail", args=[case.pk])).json()
    assert body["reads"] == [] and "22.0" not in json.dumps(body)
    panel = client.get(reverse("case-ai-panel", args=[case.pk])).content.decode()
    assert "22.0" not in panel


def test_the_first_reader_sees_their_own_marks(client, radiologist):
    case = case_with_images(score=0.7)
    image = marked_first_read(case, radiologist)
    [mark] = page_marks(client, radiologist, case)
    assert (mark["image"], mark["read"], mark["points"]) == (image.pk, "first", [[11.0, 22.0]])


def test_the_arbitrator_is_sent_each_readers_marks_told_apart(
    client, api, radiologist, radiologist2
):
    case = case_with_images(score=0.7)
    image = marked_first_read(case, radiologist)
    marked_second_read(case, radiologist2, image)
    case.refresh_from_db()
    assert case.status == CaseStatus.ARBITRATION
    arbitrator = UserFactory(username="arb1", role=Role.ARBITRATOR)
    marks = page_marks(client, arbitrator, case)
    assert [(m["read"], m["shape"], m["points"]) for m in marks] == [
        ("first", "point", [[11.0, 22.0]]),
        ("second", "arrow", [[40.0, 50.0], [30.0, 33.0]]),
    ]
    assert radiologist.username in marks[0]["label"] and radiologist2.username in marks[1]["label"]
    api.force_authenticate(arbitrator)
    reads = api.get(reverse("api-case-detail", args=[case.pk])).json()["reads"]
    assert [r["findings"][0]["mark"]["shape"] for r in reads] == ["point", "arrow"]


# --- The readers' report: each mark as an SCOORD on its film -----------------------------


def content_items(item):
    """Every content item of the SR's tree, depth first."""
    for child in item.get("ContentSequence", []):
        yield child
        yield from content_items(child)


def test_the_readers_report_holds_each_mark_as_an_scoord_on_its_films_sop_instance(
    radiologist, radiologist2, tmp_path
):
    case = dicom_case_with_images(images=2)
    image = case.studies.get().images.order_by("pk").first()
    assert image is not None
    side = image.laterality or "R"
    ellipse = Mark(image.pk, "ellipse", ((30.0, 10.0), (30.0, 50.0), (20.0, 30.0), (40.0, 30.0)))
    findings = (FindingInput(side, "mass", "10", mark=ellipse),)
    right, left = (4, 1) if side == "R" else (1, 4)
    for reader, kind in ((radiologist, ReadKind.FIRST), (radiologist2, ReadKind.SECOND)):
        data = ReadInput(kind=kind, birads_right=right, birads_left=left, density="b",
                         findings=findings, reason="r")  # fmt: skip
        reading_actions.submit_read(reader, case.pk, data)
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED
    content = interop_actions.build_read_report(case).content
    sr = pydicom.dcmread(io.BytesIO(content))
    regions = [item for item in content_items(sr) if item.ValueType == "SCOORD"]
    assert len(regions) == 2  # one per read's marked finding
    for region in regions:
        assert region.RelationshipType == "INFERRED FROM"
        assert region.GraphicType == "ELLIPSE"
        # The major axis (40 pixels, the first pair given) first, then the minor.
        assert [float(v) for v in region.GraphicData] == [30, 10, 30, 50, 20, 30, 40, 30]
        [source] = region.ContentSequence
        assert source.RelationshipType == "SELECTED FROM"
        assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.sop_instance_uid
    if shutil.which("dsrdump"):
        path = tmp_path / "report.dcm"
        path.write_bytes(content)
        done = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "W:" not in done.stderr, done.stderr
        assert "SCOORD" in done.stdout and "ELLIPSE" in done.stdout
