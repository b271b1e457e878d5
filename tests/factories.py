"""Factories for the screening domain; images are real PNG bytes of synthetic films."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import factory
import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from PIL import Image as PILImage

from ml.evidence import triage_gate
from ml.synthetic import generate_film
from screening import pathway
from screening.choices import AIStatus, Architecture, CaseStatus, ReadKind, Role, SourceFormat
from screening.models import (
    AIResult,
    Case,
    Image,
    ModelVersion,
    Patient,
    Read,
    Study,
    UnaidedOpinion,
)
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from screening.reading.assessment import FindingInput

if TYPE_CHECKING:
    from screening.imaging.dicom import InspectedDicom

M = TypeVar("M")
T = TypeVar("T")


def png_bytes(seed: int = 0, size: int = 64, bit16: bool = False) -> bytes:
    film = generate_film(seed, height=size, width=size * 13 // 16)
    pixels = film.pixels if bit16 else film.to_8bit()
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class ModelFactory(factory.django.DjangoModelFactory[M]):
    """A Django model factory whose call gives the model: ``CaseFactory()`` is a ``Case``
    (factory_boy calls ``create``; its ``__new__`` is untyped, so mypy would see the
    factory class)."""

    if TYPE_CHECKING:
        # mypy insists __new__ return an instance of its class; this one returns the model.
        def __new__(cls, *args: Any, **kwargs: Any) -> M: ...  # type: ignore[misc]


class UserFactory(ModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct-horse-battery")

    @factory.post_generation
    def role(self: User, create: bool, extracted: str | None, **kwargs: Any) -> None:
        if extracted:
            self.groups.add(Group.objects.get_or_create(name=extracted)[0])
            if extracted == Role.ADMIN:
                self.is_staff = True
                self.save()


class PatientFactory(ModelFactory[Patient]):
    class Meta:
        model = Patient

    pseudonym = factory.Sequence(lambda n: f"PSEUDO-{n:05d}")
    birth_year = 1965


class CaseFactory(ModelFactory[Case]):
    class Meta:
        model = Case

    patient = factory.SubFactory(PatientFactory)
    status = CaseStatus.READY


class StudyFactory(ModelFactory[Study]):
    class Meta:
        model = Study

    case = factory.SubFactory(CaseFactory)
    accession_number = factory.Sequence(lambda n: f"ACC{n:07d}")
    study_date = factory.Faker("date_object")
    source_format = SourceFormat.PNG


class ImageFactory(ModelFactory[Image]):
    class Meta:
        model = Image
        exclude = ("content",)

    study = factory.SubFactory(StudyFactory)
    content = factory.Sequence(lambda n: png_bytes(seed=n))
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.content).hexdigest())
    width = 52
    height = 64
    bit_depth = 8
    file = factory.LazyAttribute(lambda o: ContentFile(o.content, name="image.png"))


class ModelVersionFactory(ModelFactory[ModelVersion]):
    class Meta:
        model = ModelVersion

    architecture = Architecture.CUSTOM_CNN
    version = factory.Sequence(lambda n: f"test-{n}")
    artifact_path = "models/test"
    checksum = factory.Sequence(lambda n: hashlib.sha256(str(n).encode()).hexdigest())
    threshold = 0.5
    is_active = False
    evidence = factory.LazyAttribute(lambda version: validated_evidence(version.threshold))
    # A version that orders the worklist as this site's rule asks: its files' evidence passes
    # and, where the site asks for local evidence (the default), two people switched it on by
    # figures on this site's screens that pass too (``local_switch``). ``switched_on=False``
    # builds one that only its manifest vouches for; failing evidence is never switched on.
    triage_switch = factory.LazyAttribute(
        lambda version: (
            local_switch()
            if version.switched_on and triage_gate(version.evidence, settings.AI_GATES).passed
            else {}
        )
    )

    class Params:
        switched_on = factory.LazyFunction(lambda: settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE)


def hits(n: int, first: int, shift: int = 0) -> list[int]:
    """A per-film hit vector: ``first`` hits, rolled by ``shift`` films."""
    return np.roll([1] * first + [0] * (n - first), shift).tolist()


def heatmap_figures(trained: int, baseline: int, best_copy: int, correlation: float) -> dict:
    """A heat-map block as ml.evaluate records it: 30 lesion films, ten random copies."""
    n = 30
    copies = [hits(n, best_copy, 3 * seed) for seed in range(10)]
    return {
        "films": n,
        "trained_hits": hits(n, trained),
        "baseline_hits": hits(n, baseline),
        "trained_peak_in_lesion": trained / n,
        "baseline_peak_in_lesion": baseline / n,
        "random_point_in_lesion": 0.04,
        "random_weights": {
            "seeds": list(range(1, 11)),
            "hits": copies,
            "peak_in_lesion": [best_copy / n] * 10,
            "rank_correlation": [correlation] * 10,
        },
    }


def marks_figures(model: int, baseline: int) -> dict:
    """A marks block with its per-lesion finds at one false mark per image (31 lesions)."""
    return {
        "films": 80,
        "lesions": 31,
        "max_per_image": 3,
        "froc": {"sensitivity_at_0_5_fp": model / 62, "sensitivity_at_1_fp": model / 31},
        "found_at_1_fp": {"model": hits(31, model), "baseline": hits(31, baseline)},
    }


def validated_evidence(threshold: float = 0.5) -> dict:
    """Evidence of a version whose figures pass every gate (ml.evidence), bands cut as the
    legacy threshold did: intermediate from half the threshold, high from the threshold."""
    return {
        "schema": 2,
        "target": "abnormal",
        "film_auc": {
            "auc": 0.86,
            "ci95": [0.79, 0.92],
            "films": 400,
            "abnormal_films": 120,
            "normal_films": 280,
            "women": 200,
            "held_out": True,
            "method": "test fixture",
        },
        "triage": {"validated": True, "reason": "Film AUC 0.86 (95 % CI 0.79-0.92)."},
        "bands": {
            "films": 400,
            "intermediate_from": threshold / 2,
            "high_from": threshold,
            "intermediate": {"sensitivity": 0.9, "specificity": 0.5},
            "high": {"sensitivity": 0.7, "specificity": 0.9},
        },
        "heatmap": {"passed": True, "reason": "Passed."}
        | heatmap_figures(trained=20, baseline=4, best_copy=3, correlation=0.1),
        "marks": {"passed": True, "reason": "Passed."} | marks_figures(model=25, baseline=5),
    }


def local_figures(auc: float = 0.86, ci95: tuple = (0.80, 0.91), cancers: int = 120) -> dict:
    """Local figures as ``triage_switch.local_figures`` measures them on this site's screens."""
    return {
        "auc": auc,
        "ci95": list(ci95),
        "ci_method": "bootstrap by woman (1000 resamples)",
        "screens": 6000,
        "cancers": cancers,
        "women": 5200,
        "excluded_screens": 0,
        "measured_at": "2026-12-01T09:00:00+00:00",
    }


def local_switch(
    local: dict | None = None, proposed_by: str = "admin-a", confirmed_by: str = "auditor-b"
) -> dict:
    """``ModelVersion.triage_switch`` as ``triage_switch.confirm`` stores it: the figures it
    was switched on by, an admin who proposed and a different person who confirmed."""
    assert proposed_by != confirmed_by, "a local switch takes two people"
    return {
        "local": local if local is not None else local_figures(),
        "proposal_id": 0,
        "proposed_by": proposed_by,
        "proposed_at": "2026-12-01T09:00:00+00:00",
        "confirmed_by": confirmed_by,
        "confirmed_at": "2026-12-01T10:00:00+00:00",
    }


def unvalidated_evidence() -> dict:
    """Evidence of a version whose film AUC interval includes chance and whose heatmap and
    marks fail their paired tests (like the shipped mini-MIAS model)."""
    return {
        "schema": 2,
        "target": "abnormal",
        "film_auc": {
            "auc": 0.61,
            "ci95": [0.45, 0.77],
            "films": 50,
            "abnormal_films": 17,
            "normal_films": 33,
            "women": 25,
            "held_out": True,
            "method": "test fixture",
        },
        "triage": {"validated": False, "reason": "Film AUC 0.61 (95 % CI 0.45-0.77)."},
        "heatmap": {"passed": False, "reason": "Failed."}
        | heatmap_figures(trained=7, baseline=6, best_copy=7, correlation=0.6),
        "marks": {"passed": False, "reason": "Failed."} | marks_figures(model=8, baseline=4),
    }


def heatmap_png(size: int = 16) -> bytes:
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[size // 4 : size // 2, size // 4 : size // 2] = (255, 0, 0, 200)
    buffer = io.BytesIO()
    PILImage.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def present(value: T | None) -> T:
    """The value, which the test expects to be there (not None)."""
    assert value is not None
    return value


def probabilities(results: Iterable[AIResult]) -> list[float]:
    """The results' probabilities, each of which the test expects present (a done result)."""
    found = [result.probability for result in results]
    present = [p for p in found if p is not None]
    assert len(present) == len(found), f"a result without a probability: {found}"
    return present


def score_case(
    case: Case, probability: float, model_version: ModelVersion | None = None
) -> AIResult:
    """Attach done AI results (per image and per case) as the pipeline would store them."""
    version = model_version or ModelVersionFactory()
    for image in Image.objects.filter(study__case=case):
        result = AIResult(
            model_version=version,
            case=case,
            image=image,
            status=AIStatus.DONE,
            probability=probability,
        )
        result.heatmap.save("h.png", ContentFile(heatmap_png()), save=False)
        result.save()
    case_result = AIResult.objects.create(
        model_version=version, case=case, status=AIStatus.DONE, probability=probability
    )
    case.show_ai_result(case_result)
    if case.status == CaseStatus.AWAITING_AI:
        case.status = CaseStatus.READY
    case.save()
    return case_result


def case_with_images(images: int = 2, score: float | None = None, **case_kwargs: Any) -> Case:
    case = CaseFactory(**case_kwargs)
    study = StudyFactory(case=case)
    for _ in range(images):
        ImageFactory(study=study)
    if score is not None:
        score_case(case, score)
    return case


def stored_dicom_image(study: Study, item: InspectedDicom, **extra: Any) -> Image:
    """An image row for a checked DICOM file (``screening.imaging.dicom.inspect_dicom``), stored
    de-identified as an upload stores it."""
    return ImageFactory(
        study=study,
        content=item.content,
        file=ContentFile(item.content, name="image.dcm"),
        laterality=item.header.laterality,
        view=item.header.view,
        width=item.width,
        height=item.height,
        bit_depth=item.bit_depth,
        sop_instance_uid=item.header.sop_uid,
        sop_class_uid=item.header.sop_class_uid,
        **extra,
    )


def dicom_case_with_images(images: int = 2, score: float | None = None) -> Case:
    """A case whose study came in as DICOM: stored de-identified, as an upload stores it."""
    from pydicom.uid import generate_uid

    from screening.imaging.dicom import inspect_dicom
    from tests.dicom_files import dicom_bytes

    study_uid = generate_uid()
    checked = [
        inspect_dicom(dicom_bytes(seed=50 + i, study_uid=study_uid, view=("CC", "MLO")[i % 2]))
        for i in range(images)
    ]
    patient, _ = Patient.objects.get_or_create(pseudonym=checked[0].header.patient_pseudonym)
    case = CaseFactory(patient=patient)
    study = StudyFactory(
        case=case,
        source_format=SourceFormat.DICOM,
        study_instance_uid=checked[0].header.study_uid,
        # As an upload records it: the mode the files were inspected in, and (clinical) who.
        identity_mode=checked[0].header.identity_mode,
        patient_name=checked[0].header.patient_name,
        patient_id=checked[0].header.patient_id,
        patient_age=checked[0].header.patient_age,
    )
    for item in checked:
        stored_dicom_image(study, item)
    if score is not None:
        score_case(case, score)
    return case


R, N = True, False  # recall, no recall


def read_input(recall: bool, kind: str = ReadKind.FIRST) -> ReadInput:
    """A structured read: right breast BI-RADS 4 with a mass for recall, both 1 otherwise."""
    if recall:
        mass = FindingInput(breast="R", finding="mass", site="10", depth="middle")
        return ReadInput(
            kind=kind, birads_right=4, birads_left=1, density="b", findings=(mass,),
            reason="Seeded read",
        )  # fmt: skip
    return ReadInput(kind=kind, birads_right=1, birads_left=1, density="b", reason="Seeded read")


def read_case(reader: User, case_id: int, recall: bool) -> Read | UnaidedOpinion:
    """Read a case through the real verb, stating the read it waits for (as the page does)."""
    kind = pathway.expected_kind(Case.objects.get(pk=case_id).status)
    assert kind is not None, "the case is open"
    return reading_actions.submit_read(reader, case_id, read_input(recall, kind))


def screen(
    version: ModelVersion | None,
    score: float | None,
    decisions: Sequence[bool],
    readers: Sequence[User],
    outcome: str = "",
    received: datetime | None = None,
) -> Case:
    """A case scored by ``version`` (unless ``score`` is None) and read in turn by
    ``readers`` with ``decisions`` through the real read verb."""
    case = case_with_images(images=1, outcome=outcome)
    if score is not None:
        score_case(case, score, version)
    for reader, recall in zip(readers, decisions, strict=False):
        read_case(reader, case.pk, recall)
    if received is not None:
        Case.objects.filter(pk=case.pk).update(received_at=received)
    return case


SCREENING_VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def dicom_screen(
    patient_id: str = "PAT-VIEWER-1",
    study_date: str = "20240315",
    size: int = 512,
    bits: int = 12,
    seed: int = 300,
    status: str = CaseStatus.READY,
    voi: str = "window",
    photometric: str = "MONOCHROME2",
) -> Case:
    """A four-view DICOM screen (RCC, LCC, RMLO, LMLO) stored as an upload stores it; the
    same ``patient_id`` gives the same woman (pseudonym) across screens; ``voi`` is the
    films' VOI ("window", "lut": a VOI LUT table, or None) and ``photometric`` their
    Photometric Interpretation."""
    from pydicom.uid import generate_uid

    from screening.imaging.dicom import inspect_dicom
    from tests.dicom_files import dicom_bytes

    study_uid = generate_uid()
    checked = [
        inspect_dicom(
            dicom_bytes(
                seed=seed + i, size=size, bits=bits, study_uid=study_uid, laterality=side,
                view=view, patient_id=patient_id, study_date=study_date,
                accession=f"ACC-{study_date}-{seed}", voi=voi, photometric=photometric,
            )
        )
        for i, (side, view) in enumerate(SCREENING_VIEWS)
    ]  # fmt: skip
    patient, _ = Patient.objects.get_or_create(pseudonym=checked[0].header.patient_pseudonym)
    case = CaseFactory(patient=patient, status=status)
    study = StudyFactory(
        case=case,
        source_format=SourceFormat.DICOM,
        study_instance_uid=checked[0].header.study_uid,
        study_date=checked[0].header.study_date,
        accession_number=f"ACC-{study_date}-{seed}",
    )
    for item in checked:
        stored_dicom_image(study, item, pixel_spacing_mm=item.header.pixel_spacing_mm)
    return case
