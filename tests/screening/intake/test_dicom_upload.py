"""DICOM upload: grouped by header, pixels rendered right, every bad file refused alone."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    UID,
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    DigitalMammographyXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from screening.ai import inference
from screening.choices import AuditAction, Laterality, SourceFormat, View
from screening.imaging import dicom
from screening.imaging.films import FileRejected
from screening.models import AuditEvent, Case, Image, Study
from tests.conftest import SHARED
from tests.dicom_files import (
    GE_VENDOR_FILES,
    dicom_bytes,
    stored_pixels,
    with_film_pixels,
    with_transfer_syntax,
)

URL = "/api/studies/"
HEADERS = SHARED / "data" / "dicom-mg-headers"


def dcm(name: str = "image.dcm", **kwargs) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, dicom_bytes(**kwargs), content_type="application/dicom")


def upload(api, *files, **fields):
    return api.post(URL, {**fields, "files": list(files)}, format="multipart")


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def stored_files(media_root: Path) -> list[Path]:
    return [p for p in Path(media_root).rglob("*") if p.is_file()]


def assert_nothing_stored(media_root: Path) -> None:
    assert (Study.objects.count(), Image.objects.count(), Case.objects.count()) == (0, 0, 0)
    assert stored_files(media_root) == []


def four_views(study_uid: str, accession: str = "ACC-4V", seed: int = 10) -> list:
    views = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]
    return [
        dcm(
            f"IM{i}",
            seed=seed + i,
            laterality=side,
            view=view,
            study_uid=study_uid,
            accession=accession,
        )
        for i, (side, view) in enumerate(views)
    ]


def test_it_groups_files_into_studies_by_study_instance_uid(admin_api):
    first, second = generate_uid(), generate_uid()
    files = [
        *four_views(first, "ACC-A"),
        dcm("other.dcm", seed=30, study_uid=second, accession="ACC-B"),
    ]
    response = upload(admin_api, *files)
    assert response.status_code == 201, response.json()
    studies = {s.accession_number: s for s in Study.objects.all()}
    assert set(studies) == {"ACC-A", "ACC-B"}
    assert studies["ACC-A"].images.count() == 4 and studies["ACC-B"].images.count() == 1
    assert all(s.source_format == SourceFormat.DICOM for s in studies.values())
    assert str(studies["ACC-A"].study_date) == "2024-03-15"


def test_it_takes_laterality_and_view_from_the_header_not_the_file_name(admin_api):
    response = upload(
        admin_api, *four_views(generate_uid()), dcm("L_CC.dcm", laterality="R", view="XCCL")
    )
    assert response.status_code == 201, response.json()
    views = sorted((i.laterality, i.view) for i in Image.objects.all())
    assert views == sorted(
        [
            (Laterality.LEFT, View.CC),
            (Laterality.RIGHT, View.CC),
            (Laterality.LEFT, View.MLO),
            (Laterality.RIGHT, View.MLO),
            (Laterality.RIGHT, View.XCCL),
        ]
    )


def test_a_later_upload_of_the_same_study_adds_to_it(admin_api):
    uid = generate_uid()
    assert upload(admin_api, dcm("a.dcm", seed=1, study_uid=uid)).status_code == 201
    response = upload(admin_api, dcm("b.dcm", seed=2, study_uid=uid, view="MLO"))
    assert response.status_code == 201, response.json()
    assert Study.objects.get().images.count() == 2


def test_the_same_patient_gets_the_same_pseudonym_in_every_study(admin_api):
    upload(admin_api, dcm("a.dcm", seed=1, accession="A1"), dcm("b.dcm", seed=2, accession="A2"))
    upload(admin_api, dcm("c.dcm", seed=3, patient_id="SOMEONE-ELSE", accession="A3"))
    pseudonyms = dict(Study.objects.values_list("accession_number", "case__patient__pseudonym"))
    assert pseudonyms["A1"] == pseudonyms["A2"] != pseudonyms["A3"]
    assert pseudonyms["A1"].startswith("DCM-")


@pytest.mark.parametrize(
    "variant",
    [
        {"photometric": "MONOCHROME2", "bits": 12, "voi": "window"},
        {"photometric": "MONOCHROME1", "bits": 12, "voi": "window"},
        {"photometric": "MONOCHROME2", "bits": 16, "voi": "window"},
        {"photometric": "MONOCHROME1", "bits": 16, "voi": "window", "compressed": True},
        {"photometric": "MONOCHROME2", "bits": 12, "voi": "window", "compressed": True},
    ],
    ids=["mono2-12", "mono1-12", "mono2-16", "mono1-16-rle", "mono2-12-rle"],
)
def test_each_encoding_is_shown_and_scored_as_the_same_image(
    admin_api, client, radiologist, variant
):
    """MONOCHROME1 inverted, 16-bit windowed, RLE decoded: all give the film's own image."""
    response = upload(admin_api, dcm(seed=4, **variant))
    assert response.status_code == 201, response.json()
    image = Image.objects.get()
    assert image.bit_depth == variant["bits"]
    expected = stored_pixels(4, 128, 12).astype(np.float64) * 255 / 4095
    client.force_login(radiologist)
    page = client.get(reverse("image-file", args=[image.pk]))
    assert page.status_code == 200 and page["Content-Type"] == "image/png"
    shown = np.asarray(PILImage.open(io.BytesIO(page.content)))
    assert shown.dtype == np.uint8 and shown.shape == expected.shape
    assert np.abs(shown - expected).max() <= 1.0
    assert np.array_equal(inference.read_pixels(image), shown)


def test_the_voi_lut_is_applied_rather_than_the_stored_range(admin_api):
    assert upload(admin_api, dcm(seed=4, voi="lut")).status_code == 201
    shown = inference.read_pixels(Image.objects.get()).astype(np.float64)
    linear = stored_pixels(4, 128, 12).astype(np.float64) / 4095
    assert np.abs(shown - np.sqrt(linear) * 255).max() <= 1.0  # the LUT is a square-root curve
    assert np.abs(shown - linear * 255).mean() > 10


def test_without_a_window_the_stored_range_is_stretched(admin_api):
    assert upload(admin_api, dcm(seed=4, voi=None)).status_code == 201
    shown = inference.read_pixels(Image.objects.get())
    assert (shown.min(), shown.max()) == (0, 255)


def test_the_pixel_spacing_is_kept_for_the_model(admin_api):
    assert upload(admin_api, dcm()).status_code == 201
    assert Image.objects.get().pixel_spacing_mm == pytest.approx(0.2)


def test_burned_in_annotation_is_flagged_on_the_image_and_the_case_page(
    admin_api, client, radiologist
):
    content = with_attribute(dicom_bytes(), "BurnedInAnnotation", "YES")
    assert upload(admin_api, SimpleUploadedFile("a.dcm", content)).status_code == 201
    image = Image.objects.get()
    assert image.burned_in_annotation
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[image.study.case_id])).content.decode()
    assert "burned-in" in html.lower()


def with_attribute(content: bytes, keyword: str, value: object) -> bytes:
    return changed(content, **{keyword: value})


def changed(content: bytes, **attributes: object) -> bytes:
    """The file with attributes set (None: removed), saved as it is, however wrong."""
    ds = pydicom.dcmread(io.BytesIO(content))
    with warnings.catch_warnings():  # pydicom warns of the invalid values wanted here
        warnings.simplefilter("ignore")
        for keyword, value in attributes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    # The File Meta header names the dataset's SOP class and instance: kept in step, as a
    # modality writes it (a file contradicting itself is refused, test_strict_decoding).
    if attributes.get("SOPClassUID"):
        ds.file_meta.MediaStorageSOPClassUID = UID(str(attributes["SOPClassUID"]))
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _with_pixels(pixels: np.ndarray) -> bytes:
    """The test film's header (window over the 12-bit range) over other 16-bit pixels."""
    rows, columns = pixels.shape
    content = dicom_bytes()
    return changed(content, Rows=rows, Columns=columns, PixelData=pixels.astype("<u2").tobytes())


def _blank_with_label() -> bytes:
    """A black film but for a burned-in label: under 1% of pixels, anti-aliased (40 greys)."""
    pixels = np.zeros((128, 104), np.uint16)
    pixels[4:7, 4:44] = np.linspace(0, 4095, 40).astype(np.uint16)
    return _with_pixels(pixels)


def _two_frames_undeclared() -> bytes:
    """Two frames of pixel data and no NumberOfFrames: pydicom decodes both."""
    content = dicom_bytes()
    return changed(content, PixelData=pydicom.dcmread(io.BytesIO(content)).PixelData * 2)


def _two_rle_frames_undeclared() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(compressed=True)))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    buffer = io.BytesIO()
    ds.PixelData = encapsulate([frame, frame])
    ds.save_as(buffer)
    return buffer.getvalue()


def _one_bit() -> bytes:
    rows, columns = 128, 104
    bits = np.random.default_rng(1).integers(0, 2, rows * columns).astype(np.uint8)
    packed = np.packbits(bits, bitorder="little").tobytes()
    content = dicom_bytes(voi=None)
    return changed(content, BitsAllocated=1, BitsStored=1, HighBit=0, PixelData=packed)


def _longer_pixel_data() -> bytes:
    content = dicom_bytes()
    return changed(content, PixelData=pydicom.dcmread(io.BytesIO(content)).PixelData + b"\0" * 6)


def _mangled_frames() -> bytes:
    """NumberOfFrames "x": a value no integer conversion survives."""
    content = with_attribute(dicom_bytes(), "NumberOfFrames", "1")
    element = b"\x28\x00\x08\x00IS\x02\x00"
    assert element + b"1 " in content
    return content.replace(element + b"1 ", element + b"x ")


def _truncated() -> bytes:
    content = dicom_bytes()
    return content[: len(content) * 2 // 3]


@pytest.mark.parametrize(
    ("content", "code", "status"),
    [
        (b"not dicom at all, just text", "not_an_image", 400),
        (b"\x00" * 128 + b"DICM" + b"\xff" * 300, "corrupt", 400),
        (_truncated(), "corrupt", 400),
        (dicom_bytes(pixel_data=False), "no_pixel_data", 400),
        (dicom_bytes(modality="CT"), "not_mammography", 400),
        (
            with_transfer_syntax(dicom_bytes(), "1.2.840.10008.1.2.4.100"),
            "unsupported_transfer_syntax",
            400,
        ),
        (dicom_bytes(frames=3), "multi_frame", 400),
        (with_attribute(dicom_bytes(), "SOPInstanceUID", None), "missing_attribute", 400),
        (_mangled_frames(), "corrupt", 400),
        (with_attribute(dicom_bytes(), "RescaleSlope", "nan"), "blank_image", 400),
        (with_attribute(dicom_bytes(), "RescaleSlope", "1e308"), "blank_image", 400),
        (with_attribute(dicom_bytes(), "WindowWidth", "nan"), "blank_image", 400),
        (changed(dicom_bytes(), WindowCenter=60000, WindowWidth=10), "blank_image", 400),
        (_with_pixels(np.full((128, 104), 2000)), "blank_image", 400),
        (_blank_with_label(), "blank_image", 400),
        (_two_frames_undeclared(), "multi_frame", 400),
        (_two_rle_frames_undeclared(), "multi_frame", 400),
        (_longer_pixel_data(), "corrupt", 400),
        (_one_bit(), "unsupported_bit_depth", 400),
        (
            with_attribute(dicom_bytes(), "SOPClassUID", ComprehensiveSRStorage),
            "not_mammography",
            400,
        ),
        (
            with_attribute(dicom_bytes(), "SOPClassUID", SecondaryCaptureImageStorage),
            "not_mammography",
            400,
        ),
    ],
    ids=[
        "not-dicom",
        "garbage-after-magic",
        "truncated",
        "no-pixel-data",
        "ct",
        "mpeg2-syntax",
        "multi-frame",
        "no-sop-uid",
        "mangled-number-of-frames",
        "rescale-slope-nan",
        "rescale-slope-overflowing",
        "window-width-nan",
        "window-far-from-every-pixel",
        "constant-pixels",
        "black-but-a-burned-in-label",
        "two-frames-without-number-of-frames",
        "two-rle-frames-without-number-of-frames",
        "pixel-data-longer-than-rows-x-columns",
        "one-bit",
        "comprehensive-sr-sop-class",
        "secondary-capture-sop-class",
    ],
)
def test_it_refuses_a_bad_dicom_file_naming_it_and_stores_nothing(
    admin_api, media_root, content, code, status
):
    response = upload(admin_api, dcm("good.dcm", seed=9), SimpleUploadedFile("scan-7.dcm", content))
    assert response.status_code == status
    body = response.json()
    assert "scan-7.dcm" in body["detail"]
    assert [f["code"] for f in body["files"]] == ["not_stored", code]
    assert_nothing_stored(media_root)
    event = AuditEvent.objects.get(action=AuditAction.UPLOAD_REJECTED)
    assert event.detail["rejections"] == [{"position": 1, "code": code, "status": status}]


def test_a_refusal_names_the_reason_but_no_header_value(admin_api):
    content = with_attribute(dicom_bytes(), "SOPClassUID", ComprehensiveSRStorage)
    response = upload(admin_api, SimpleUploadedFile("sr.dcm", content))
    message = response.json()["files"][0]["message"]
    assert "Comprehensive SR Storage is not a mammography image" in message
    private = with_attribute(dicom_bytes(), "SOPClassUID", "1.2.826.0.1.3680043.99.4242")
    response = upload(admin_api, SimpleUploadedFile("odd.dcm", private))
    assert "4242" not in response.content.decode()
    assert "not a standard image class" in response.json()["files"][0]["message"]


@pytest.mark.parametrize(
    "sop_class",
    [DigitalMammographyXRayImageStorageForProcessing, ComputedRadiographyImageStorage],
    ids=["mg-for-processing", "cr"],
)
def test_mammograms_in_other_image_storage_classes_are_accepted(admin_api, sop_class):
    content = with_attribute(dicom_bytes(), "SOPClassUID", sop_class)
    response = upload(admin_api, SimpleUploadedFile("a.dcm", content))
    assert response.status_code == 201, response.json()
    assert Image.objects.get().sop_class_uid == sop_class


def test_a_film_that_is_not_numbers_is_never_rendered_to_be_scored():
    """Refused by ``rendition`` itself, so a file stored before the check is never scored."""
    ds = pydicom.dcmread(io.BytesIO(with_attribute(dicom_bytes(), "RescaleSlope", "nan")))
    with pytest.raises(FileRejected) as refusal:
        dicom.rendition(ds)
    assert refusal.value.code == "blank_image"


@pytest.mark.parametrize("name", GE_VENDOR_FILES)
def test_real_vendor_stub_pixels_are_refused_as_blank(admin_api, media_root, name):
    """The vendor test files carry 1 x 2 or 4 x 4 placeholders: nothing a reader could read."""
    path = HEADERS / name
    if not path.exists():
        pytest.skip(f"{path} is not available")
    response = upload(admin_api, SimpleUploadedFile("stub.dcm", path.read_bytes()))
    assert response.status_code == 400
    assert response.json()["files"][0]["code"] == "blank_image"
    assert_nothing_stored(media_root)


def test_a_real_vendor_projection_without_pixel_data_is_refused(admin_api, media_root):
    path = HEADERS / "MG-Im-Hologic-PropProj.dcm"
    if not path.exists():
        pytest.skip(f"{path} is not available")
    response = upload(admin_api, SimpleUploadedFile("hologic.dcm", path.read_bytes()))
    assert response.status_code == 400
    assert response.json()["files"][0]["code"] == "no_pixel_data"
    assert_nothing_stored(media_root)


def test_real_vendor_headers_are_read_for_laterality_view_and_date(admin_api):
    path = HEADERS / "MG-Im-GE_Seno_1_ForPresentation.dcm"
    if not path.exists():
        pytest.skip(f"{path} is not available")
    content = with_film_pixels(path.read_bytes())
    response = upload(admin_api, SimpleUploadedFile("ge.dcm", content))
    assert response.status_code == 201, response.json()
    image = Image.objects.get()
    assert (image.laterality, image.view, image.bit_depth) == (Laterality.LEFT, View.CC, 12)
    assert str(image.study.study_date) == "2013-04-12"


def test_a_duplicate_sop_instance_uid_is_a_conflict(admin_api, media_root):
    uid = generate_uid()
    assert upload(admin_api, dcm("a.dcm", seed=1, sop_uid=uid)).status_code == 201
    response = upload(admin_api, dcm("b.dcm", seed=2, sop_uid=uid, study_uid=generate_uid()))
    assert response.status_code == 409
    assert response.json()["files"][0]["code"] == "duplicate"
    assert "SOPInstanceUID" in response.json()["files"][0]["message"]
    assert Image.objects.count() == 1 and Study.objects.count() == 1
    # The first upload's file and its preview (screening.imaging.previews); nothing of the second.
    assert sorted(p.parent.name for p in stored_files(media_root))[-1] == "previews"
    assert len(stored_files(media_root)) == 2


def test_the_same_sop_instance_twice_in_one_upload_is_a_conflict(admin_api, media_root):
    uid = generate_uid()
    response = upload(
        admin_api, dcm("a.dcm", seed=1, sop_uid=uid), dcm("b.dcm", seed=2, sop_uid=uid)
    )
    assert response.status_code == 409
    assert [f["code"] for f in response.json()["files"]] == ["not_stored", "duplicate"]
    assert_nothing_stored(media_root)


def test_dicom_above_the_pixel_cap_is_refused_from_the_header(admin_api, settings, media_root):
    settings.UPLOAD_MAX_PIXELS = 1000
    response = upload(admin_api, dcm())
    assert response.status_code == 400
    assert response.json()["files"][0]["code"] == "too_many_pixels"
    assert_nothing_stored(media_root)


def test_dicom_over_the_file_size_limit_is_413(admin_api, settings, media_root):
    settings.UPLOAD_MAX_FILE_BYTES = 1000
    response = upload(admin_api, dcm())
    assert response.status_code == 413
    assert_nothing_stored(media_root)


def test_dicom_and_png_are_not_mixed_in_one_upload(admin_api, media_root):
    from tests.factories import png_bytes

    png = SimpleUploadedFile("L_CC.png", png_bytes(seed=1))
    response = upload(admin_api, dcm(), png, accession_number="X", patient_pseudonym="P")
    assert response.status_code == 400
    assert [f["code"] for f in response.json()["files"]] == ["not_stored", "mixed_formats"]
    assert_nothing_stored(media_root)


def test_the_upload_page_takes_dicom_without_an_accession_number(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("upload"), {"target": "new", "modality": "MG", "files": [dcm()]})
    assert response.status_code == 201, response.content[:500]
    assert Study.objects.get().accession_number == "ACC-DCM-1"


def test_import_studies_reads_a_folder_of_dicom(tmp_path, admin_user):
    from django.core.management import call_command

    uid = generate_uid()
    folder = tmp_path / "pacs-export" / "study-1"
    folder.mkdir(parents=True)
    for i, upload_file in enumerate(four_views(uid, "ACC-IMP")):
        (folder / f"IM{i}.dcm").write_bytes(upload_file.read())
    admin_user.username = "admin"
    admin_user.save()
    call_command("import_studies", str(tmp_path / "pacs-export"), stdout=io.StringIO())
    study = Study.objects.get()
    assert (study.accession_number, study.images.count()) == ("ACC-IMP", 4)


def test_an_8_bit_dicom_is_shown_as_png_not_served_raw(admin_api, client, radiologist):
    content = with_attribute(dicom_bytes(voi=None), "BitsStored", 8)
    assert upload(admin_api, SimpleUploadedFile("a.dcm", content)).status_code == 201
    client.force_login(radiologist)
    response = client.get(reverse("image-file", args=[Image.objects.get().pk]))
    assert response["Content-Type"] == "image/png"


def _deeply_nested(depth: int = 5000) -> bytes:
    """A valid header, then sequences nested ``depth`` deep (undefined lengths)."""
    head = dicom_bytes(pixel_data=False)
    nested = (
        b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    ) * depth
    return head + nested


def test_deeply_nested_sequences_are_refused_not_a_crash(admin_api, media_root):
    response = upload(admin_api, SimpleUploadedFile("nested.dcm", _deeply_nested()))
    assert response.status_code == 400
    assert response.json()["files"][0]["code"] in {"corrupt", "no_pixel_data"}
    assert_nothing_stored(media_root)


def test_mutated_headers_are_refused_or_accepted_never_a_crash(db, settings):
    """Random byte flips in the header: every outcome is a clean FileRejected or a file."""
    import random

    from screening.imaging.pictures import inspect_image

    original = dicom_bytes(size=32)
    rng = random.Random(6)
    outcomes = set()
    for _ in range(300):
        mutated = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(132, 1400)] = rng.randrange(256)
        try:
            inspect_image("fuzz.dcm", len(mutated), lambda m=mutated: bytes(m))
            outcomes.add("accepted")
        except FileRejected as rejection:
            outcomes.add(rejection.code)
    assert "accepted" in outcomes and len(outcomes) > 2, outcomes


@pytest.mark.parametrize(
    ("value", "scheme"),
    [("399368009", "SCT"), ("R-10226", "SRT"), ("R-10226", "SNM3")],
    ids=["snomed-ct", "snomed-rt", "snomed-rt-as-ge-labels-it"],
)
def test_the_view_comes_from_the_view_code_sequence_when_view_position_is_empty(
    admin_api, value, scheme
):
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(view="")))
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = value, scheme
    code.CodeMeaning = "medio-lateral oblique"
    ds.ViewCodeSequence = [code]
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert upload(admin_api, SimpleUploadedFile("a.dcm", buffer.getvalue())).status_code == 201
    assert Image.objects.get().view == View.MLO


def test_a_nul_byte_in_a_stored_header_value_is_a_400_not_a_server_error(admin_api, media_root):
    """Found by scripts/fuzz_uploads.py: PostgreSQL refuses NUL in text (a 500 before)."""
    content = with_attribute(dicom_bytes(), "AccessionNumber", "A\x00B")
    response = upload(admin_api, SimpleUploadedFile("nul.dcm", content))
    assert response.status_code == 400
    assert response.json()["files"][0]["message"] == (
        "DICOM header AccessionNumber holds control characters: not a valid value."
    )
    assert_nothing_stored(media_root)
