"""Screening domain: patients, cases, studies, images, AI results, reads and the audit trail."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q
from django.utils import timezone
from rest_framework.authtoken.models import TokenProxy

from ml import evidence, manifest_schema
from ml.evidence import Verdict

from .choices import (
    READABLE_STATUSES,
    AIReveal,
    AIStatus,
    Architecture,
    AuditAction,
    AuditOutcome,
    BiRads,
    Breast,
    CaseRoute,
    CaseStatus,
    Decision,
    DeliveredObject,
    DeliveryStatus,
    Density,
    DriftGroupBy,
    FindingDepth,
    FindingSite,
    FindingType,
    HangingProtocol,
    IdentityMode,
    Laterality,
    MarkShape,
    Modality,
    Outcome,
    OutcomeSource,
    PendingReason,
    ProposalStatus,
    ReadingPolicy,
    ReadKind,
    RevisionTrigger,
    RiskBand,
    Role,
    SilentTrial,
    SourceFormat,
    View,
    ai_recalls,
)


class Patient(models.Model):
    """A pseudonymous person: no name, no full date of birth, ever."""

    pseudonym = models.CharField(max_length=64, unique=True)
    birth_year = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.pseudonym


# The columns of each read's gist on its case (``Case.note_read`` writes them).
READ_GIST_COLUMNS = frozenset(
    [
        *(
            f"{kind}_{part}"
            for kind in ("first", "second", "arbitration")
            for part in ("reader_id", "recall", "seconds", "seen_version_id", "agrees")
        ),
        "read_densities",
    ]
)

# A case's route, set once by the routing step (``ai.inference.route_case``) or the first
# read; a stale copy of the case saved whole must not undo it.
ROUTE_COLUMNS = frozenset(["route", "ai_normal", "ai_decision"])


def _read_link(to: str) -> models.ForeignKey:
    """A read's gist column pointing at ``to`` (who read; the version shown), kept by
    ``Case.note_read`` only, never edited, and never an index of its own."""
    return models.ForeignKey(
        to,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        editable=False,
    )


def _read_reader() -> models.ForeignKey:
    return _read_link(settings.AUTH_USER_MODEL)


def _seen_version() -> models.ForeignKey:
    """The version whose case result the reader was shown (None: none shown)."""
    return _read_link("ModelVersion")


def density_bit(density: str) -> int:
    """A density's bit in ``Case.read_densities`` (0 for none recorded)."""
    return 1 << Density.values.index(density) if density else 0


class Case(models.Model):
    """One screening episode of a patient, moving through double reading."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    status = models.CharField(
        max_length=20, choices=CaseStatus.choices, default=CaseStatus.AWAITING_AI
    )
    received_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Denormalised from the shown case-level AIResult so the worklist is ordered by
    # an index, not a join over 100k cases. triage_priority is the score, or -1 while
    # AI is pending: a NOT NULL key sorts the same on every database (SQLite has no
    # NULLS LAST in an index).
    ai_score = models.FloatField(null=True, blank=True)
    triage_priority = models.FloatField(default=-1.0)
    ai_result = models.ForeignKey(
        "AIResult", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    final_decision = models.CharField(max_length=10, choices=Decision.choices, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    outcome_source = models.CharField(max_length=10, choices=OutcomeSource.choices, blank=True)
    is_synthetic = models.BooleanField(
        default=False, help_text="Demo case built from generated images, not a real patient."
    )

    # Stored, not derived at query time, so the worklist's band filter is an index walk
    # (a version's threshold never changes once registered).
    risk_band = models.CharField(
        max_length=12, choices=RiskBand.choices, default=RiskBand.PENDING, editable=False
    )

    # Each read's gist, kept on the case by the read verb (``note_read``), so the auditor's
    # figures over a million screens are one pass over this table, not a join with the
    # reads. The reads themselves stay the record; these columns only summarise them.
    first_reader = _read_reader()
    first_recall = models.BooleanField(null=True, blank=True, editable=False)
    first_seconds = models.PositiveIntegerField(null=True, blank=True, editable=False)
    first_seen_version = _seen_version()
    first_agrees = models.BooleanField(null=True, blank=True, editable=False)
    second_reader = _read_reader()
    second_recall = models.BooleanField(null=True, blank=True, editable=False)
    second_seconds = models.PositiveIntegerField(null=True, blank=True, editable=False)
    second_seen_version = _seen_version()
    second_agrees = models.BooleanField(null=True, blank=True, editable=False)
    arbitration_reader = _read_reader()
    arbitration_recall = models.BooleanField(null=True, blank=True, editable=False)
    arbitration_seconds = models.PositiveIntegerField(null=True, blank=True, editable=False)
    arbitration_seen_version = _seen_version()
    arbitration_agrees = models.BooleanField(null=True, blank=True, editable=False)
    # The ACR densities its readers recorded, one bit each (``density_bit``).
    read_densities = models.PositiveSmallIntegerField(default=0, editable=False)

    # The site's reading policy in force when the case arrived (None: cases from before
    # policies existed, read as standard double reading). It never changes afterwards.
    policy = models.ForeignKey(
        "SitePolicy", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        editable=False,
    )  # fmt: skip
    # What the policy decided for this case, once, before any read (``pathway.route``).
    route = models.CharField(
        max_length=10, choices=CaseRoute.choices, default=CaseRoute.UNDECIDED, blank=True,
        editable=False,
    )  # fmt: skip
    ai_normal = models.BooleanField(
        default=False, editable=False, help_text="Tagged 'AI: normal' by normal triage."
    )
    # The AI's decision as the second read (AI as second reader), fixed at routing.
    ai_decision = models.CharField(
        max_length=10, choices=Decision.choices, blank=True, editable=False
    )

    class Meta:
        indexes = [
            # Only open cases, already in worklist order: the first page is a short index
            # walk however many closed cases accumulate.
            models.Index(
                fields=["-triage_priority", "received_at", "id"],
                condition=Q(status__in=READABLE_STATUSES),
                name="worklist_open_order",
            ),
            models.Index(
                fields=["status", "-triage_priority", "received_at"], name="worklist_order"
            ),
            models.Index(
                fields=["risk_band", "-triage_priority", "received_at", "id"],
                condition=Q(status__in=READABLE_STATUSES),
                name="worklist_open_band_order",
            ),
            # The auditor's date filters.
            models.Index(fields=["received_at"], name="case_received"),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A save of the whole row leaves the reads' gist as stored: only the read verb
        writes it (``note_read``, naming its columns), so a stale copy of a case saved
        elsewhere cannot rewrite who read it and what they decided in the auditor's figures."""
        if kwargs.get("update_fields") is None and not self._state.adding and self.pk:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key
                and f.attname not in READ_GIST_COLUMNS | ROUTE_COLUMNS | {"policy_id"}
            ]
        elif self._state.adding and self.policy_id is None:
            self.policy = SitePolicy.in_force()
        super().save(*args, **kwargs)

    def show_ai_result(self, result: AIResult | None) -> None:
        """Point the case at the case-level result readers see (None: AI pending)."""
        self.ai_result = result
        self.ai_score = result.probability if result is not None else None
        self.triage_priority = triage_priority(result)
        self.risk_band = band_of(result)

    def note_read(self, read: Read) -> list[str]:
        """Copy a new read's gist into its kind's columns; returns the fields to save."""
        kind = read.kind
        setattr(self, f"{kind}_reader_id", read.reader_id)
        setattr(self, f"{kind}_recall", read.decision == Decision.RECALL)
        setattr(self, f"{kind}_seconds", read.seconds_taken)
        seen = read.ai_result.model_version_id if read.ai_result is not None else None
        setattr(self, f"{kind}_seen_version_id", seen)
        setattr(self, f"{kind}_agrees", read.agrees_with_ai)
        self.read_densities |= density_bit(read.density)
        return [
            *(f"{kind}_{part}" for part in ("reader", "recall", "seconds", "seen_version")),
            f"{kind}_agrees",
            "read_densities",
        ]

    @property
    def ai_recommends_recall(self) -> bool | None:
        """The AI's suggestion, only from a version validated for triage: an unvalidated
        score suggests nothing, so it cannot pull a reader toward it (automation bias)."""
        if self.ai_score is None or self.ai_result is None:
            return None
        version = self.ai_result.model_version
        if not version.validated_for_triage:
            return None
        return ai_recalls(self.ai_score, version.threshold)

    @property
    def band_description(self) -> str:
        if self.ai_result is None or not self.ai_result.model_version.validated_for_triage:
            return ""
        return self.ai_result.model_version.band_description(self.risk_band)

    @property
    def ai_orders_worklist(self) -> bool:
        return self.ai_result is not None and self.triage_priority >= 0


def triage_priority(result: AIResult | None) -> float:
    """The worklist key: the score where its version is validated for triage, else -1,
    so unvalidated and pending cases are read longest-waiting first."""
    if result is None or result.probability is None:
        return -1.0
    return result.probability if result.model_version.validated_for_triage else -1.0


def band_of(result: AIResult | None) -> str:
    """The risk band a case-level result puts its case in (thresholds from its version)."""
    if result is None:
        return RiskBand.PENDING
    if result.status == AIStatus.FAILED:
        return RiskBand.FAILED
    return version_band(result.probability, result.model_version)


def version_band(score: float | None, version: ModelVersion) -> str:
    """The band at the version's validated operating points, or its threshold without."""
    if score is None:
        return RiskBand.PENDING
    return str(version_bands(np.asarray([score], float), version)[0])


def version_bands(scores: np.ndarray, version: ModelVersion) -> np.ndarray:
    """``version_band`` for many scores at once (NaN: pending). A version not validated for
    triage puts every score in no band ("unvalidated"): its bands would rank cases it has
    not shown it can rank."""
    found: np.ndarray | None = None
    if not version.validated_for_triage:
        found = np.full(len(scores), RiskBand.UNVALIDATED.value, dtype=object)
    else:
        found = evidence.bands(scores, version.evidence)
    if found is None:
        found = score_bands(scores, version.threshold)
    return np.where(np.isnan(scores), RiskBand.PENDING.value, found).astype(object)


def score_band(score: float | None, threshold: float) -> str:
    """High at or above the version's threshold, intermediate from half of it, else low."""
    if score is None:
        return RiskBand.PENDING
    return str(score_bands(np.asarray([score], float), threshold)[0])


def score_bands(scores: np.ndarray, threshold: float) -> np.ndarray:
    return evidence.cut_bands(scores, threshold / 2, threshold)


class SitePolicy(models.Model):
    """One version of the site's reading policy, in force from ``starts_at`` until the next.

    Rows are never edited: a change is a new row, so every case keeps the policy it arrived
    under (``Case.policy``) and the history says who chose what, when.
    """

    policy = models.CharField(max_length=20, choices=ReadingPolicy.choices)
    single_read_normal = models.BooleanField(
        default=False, help_text="Normal triage: exams tagged AI: normal get one read."
    )
    ai_reveal = models.CharField(
        max_length=12, choices=AIReveal.choices, default=AIReveal.CONCURRENT
    )
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    starts_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_policy_display()} from {self.starts_at:%Y-%m-%d %H:%M}"

    @classmethod
    def in_force(cls, at: Any = None) -> SitePolicy | None:
        """The version in force at ``at`` (now by default); None: standard, never set."""
        return cls.objects.filter(starts_at__lte=at or timezone.now()).first()

    @property
    def options(self) -> str:
        """The options chosen, in words ("" where none apply)."""
        parts = []
        if self.policy == ReadingPolicy.NORMAL_TRIAGE and self.single_read_normal:
            parts.append("single-read AI-normal exams")
        if self.ai_reveal == AIReveal.SEQUENTIAL:
            parts.append("AI shown after an unaided opinion")
        return ", ".join(parts)


class Study(models.Model):
    # A screen's study belongs to its case. A prior study (history: fetched from the PACS
    # for comparison, or uploaded as one) has no case and so no reading task: it belongs to
    # the woman directly (``prior_of``), and every query that starts from cases (worklists, the next case,
    # the AI queue, the auditor's figures, exports) never meets it. Exactly one of the two
    # is set (``study_is_a_screen_or_a_prior``).
    case = models.ForeignKey(
        Case, on_delete=models.PROTECT, related_name="studies", null=True, blank=True
    )
    prior_of = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="prior_studies", null=True, blank=True
    )
    accession_number = models.CharField(max_length=64, unique=True)
    study_date = models.DateField()
    modality = models.CharField(max_length=4, choices=Modality.choices, default=Modality.MG)
    source_format = models.CharField(max_length=10, choices=SourceFormat.choices)
    # DICOM studies only: the *remapped* StudyInstanceUID in research mode, the hospital's
    # own (original) one in clinical mode.
    study_instance_uid = models.CharField(max_length=64, blank=True, default="")
    # The site's identity mode when the study was ingested (settings.IDENTITY_MODE then):
    # identity is shown only for clinical studies, so a later switch to clinical never
    # re-identifies a study stored de-identified.
    identity_mode = models.CharField(
        max_length=8, choices=IdentityMode.choices, default=IdentityMode.RESEARCH
    )
    # Clinical studies only (empty in research mode): who the films are of, as the header
    # says, for the readers' wrong-patient check. Never in URLs, logs or audit details.
    patient_name = models.CharField(max_length=128, blank=True, default="")
    patient_id = models.CharField(max_length=64, blank=True, default="")
    patient_age = models.PositiveSmallIntegerField(null=True, blank=True)  # at screening
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(
                condition=Q(case__isnull=False, prior_of__isnull=True)
                | Q(case__isnull=True, prior_of__isnull=False),
                name="study_is_a_screen_or_a_prior",
            ),
            models.UniqueConstraint(
                fields=["study_instance_uid"],
                condition=~Q(study_instance_uid=""),
                name="unique_study_instance_uid",
            ),
        ]

    def __str__(self) -> str:
        return f"Study {self.pk}"

    @property
    def is_dicom(self) -> bool:
        return bool(self.study_instance_uid)

    @property
    def is_prior(self) -> bool:
        """History for comparison: no case, never read, never scored."""
        return self.case_id is None

    @property
    def woman(self) -> Patient:
        """Whose films these are, for a screen's study and a prior alike."""
        owner = self.prior_of if self.case is None else self.case.patient
        assert owner is not None  # study_is_a_screen_or_a_prior
        return owner


def image_upload_path(instance: Image, filename: str) -> str:
    """Content-addressed: the stored path never carries the uploaded file name."""
    suffix = filename.rsplit(".", 1)[-1].lower()
    return f"images/{instance.sha256[:2]}/{instance.sha256}.{suffix}"


class Image(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="images")
    laterality = models.CharField(max_length=1, choices=Laterality.choices, blank=True)
    view = models.CharField(max_length=4, choices=View.choices, blank=True)
    file = models.FileField(upload_to=image_upload_path)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bit_depth = models.PositiveSmallIntegerField()
    sha256 = models.CharField(max_length=64, unique=True)
    # DICOM images only: the remapped SOPInstanceUID, the source's SOP class, the pixel
    # spacing the model rescales by, and whether the modality said text is burned into
    # the pixels (de-identification cannot remove that, so readers are warned).
    sop_instance_uid = models.CharField(max_length=64, blank=True, default="")
    sop_class_uid = models.CharField(max_length=64, blank=True, default="")
    pixel_spacing_mm = models.FloatField(null=True, blank=True)
    burned_in_annotation = models.BooleanField(default=False)
    # Where the film was made, for drift monitoring (``audit/drift.py``): the DICOM
    # Manufacturer (0008,0070) and Manufacturer's Model Name (0008,1090) as sent, and the
    # site as a keyed code of InstitutionName, else StationName (``dicom.site_code``): the
    # names themselves are not kept, as de-identification drops them. Empty: unknown
    # (PNG and JPEG uploads carry none).
    manufacturer = models.CharField(max_length=64, blank=True, default="")
    scanner_model = models.CharField(max_length=64, blank=True, default="")
    site = models.CharField(max_length=16, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["laterality", "view", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["sop_instance_uid"],
                condition=~Q(sop_instance_uid=""),
                name="unique_sop_instance_uid",
            ),
        ]

    def __str__(self) -> str:
        return f"Image {self.pk}"

    @property
    def is_dicom(self) -> bool:
        return bool(self.sop_instance_uid)

    @property
    def mark_font_size(self) -> int:
        """Region-mark labels in image pixels, legible however large the film."""
        return max(1, round(max(self.width or 0, self.height or 0) / 40))

    @property
    def label(self) -> str:
        parts = [self.get_laterality_display(), self.view]
        return " ".join(p for p in parts if p and p != "Unknown") or f"Image {self.pk}"


AI_NOT_VALIDATED = (
    "This AI version is not validated: in testing it did no better than chance. Read as without AI."
)
"""What a reader is told instead of any score, band, probability or suggestion of a version
not validated for triage (``ModelVersion.not_shown_reason``), in the words of issue 21."""
AI_NOT_TESTED = (
    "This AI version is not validated: it has not been tested on held-out films. "
    "Read as without AI."
)
AI_BELOW_BAR = (
    "This AI version is not validated: in testing it did better than chance but not well "
    "enough to rank cases. Read as without AI."
)
AI_CAPTION_NOT_VALIDATED = "AI not validated: read as without AI"
"""The same statement, short enough for the caption under each film."""
RAW_SCORE_LABEL = "raw score, research only, not validated"
"""How an auditor's page labels the score of a version not validated for triage."""


class ModelVersion(models.Model):
    architecture = models.CharField(max_length=20, choices=Architecture.choices)
    version = models.CharField(max_length=40)
    artifact_path = models.CharField(max_length=500)
    checksum = models.CharField(max_length=64)
    input_size = models.PositiveIntegerField(default=299)
    threshold = models.FloatField(default=0.5)
    metrics = models.JSONField(default=dict, blank=True)
    # What the version has shown it can do (ml.evidence, from the artifact's manifest):
    # the app shows a score as a ranking, a heatmap or region marks only where it passed.
    evidence = models.JSONField(default=dict, blank=True)
    # What the artifact's manifest claims (target, preprocessing, training data, the women it
    # was trained and calibrated on), kept as registered so an admin sees what was brought.
    manifest = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    # Switched on for triage by its figures on this site's screens and two people
    # (screening.audit.triage_switch): the figures ("local"), who proposed and who confirmed,
    # when. Empty while off; judged against the site's gates on every ask, like ``evidence``.
    triage_switch = models.JSONField(default=dict, blank=True, editable=False)
    # A silent trial (choices.SilentTrial): running, the version scores every new study
    # beside (or without) the active one; running or stopped, readers never see its results.
    silent_trial = models.CharField(
        max_length=10, choices=SilentTrial.choices, default=SilentTrial.NONE, blank=True
    )
    silent_trial_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["architecture", "version"], name="unique_model_version"
            ),
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_model"
            ),
            models.CheckConstraint(
                condition=Q(threshold__gte=0) & Q(threshold__lte=1), name="threshold_in_unit"
            ),
            models.CheckConstraint(
                condition=Q(is_active=False) | Q(silent_trial=SilentTrial.NONE),
                name="active_model_not_in_silent_trial",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_architecture_display()} {self.version}"

    # The one rule of who sees a version's results: a version in silent trial (running or
    # stopped) scores for auditors only. Readers are shown a case's ``ai_result``, which
    # never points at such a version's result; what else they see (work in flight, the
    # heatmap files) asks this too (``ai.queries``).
    @property
    def hidden_from_readers(self) -> bool:
        return self.silent_trial != SilentTrial.NONE

    @property
    def in_silent_trial(self) -> bool:
        """Scoring every new study for auditors now."""
        return self.silent_trial == SilentTrial.RUNNING

    # The three questions every surface asks. Each judges the recorded figures against
    # this site's gates (settings.AI_GATES) on every ask, never a stored "passed" flag, and
    # is False when a figure it needs is missing.
    @property
    def validated_for_triage(self) -> bool:
        if self.on_local_evidence:
            return True
        if settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE:
            return False
        return evidence.triage_gate(self.evidence, settings.AI_GATES).passed

    @property
    def triage_reason(self) -> str:
        """The verdict that decides: the local one where it was switched on by local figures
        and its manifest alone would not pass."""
        manifest = evidence.triage_gate(self.evidence, settings.AI_GATES)
        if self.triage_switch and (self.on_local_evidence or not manifest.passed):
            return _reason(self.local_verdict)
        if settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE and not self.on_local_evidence:
            return (
                f"{_reason(manifest)} This site orders the worklist only by a version's figures "
                "on its own screens, and this version has not been switched on by them."
            )
        return _reason(manifest)

    @property
    def local_verdict(self) -> Verdict:
        """The triage gate judged on the local figures it was switched on by."""
        return evidence.local_triage_gate(
            self.triage_switch.get("local"), settings.AI_GATES, settings.AI_LOCAL_MIN_CANCERS
        )

    @property
    def on_local_evidence(self) -> bool:
        """Switched on for triage by two people on local figures that pass the site's gate."""
        return bool(self.triage_switch) and self.local_verdict.passed

    # What follows from ``validated_for_triage``: the one home of the rule that every page,
    # the API, the exports and the DICOM SR ask before they show an AI figure.

    @property
    def not_shown_reason(self) -> str:
        """Why no exam score, band, probability or suggestion of this version is shown, in
        plain words ("" when they are): the AUC interval reaching chance, no test at all,
        or a test above chance that still fell short of the triage gate."""
        if self.validated_for_triage:
            return ""
        ci = (self.film_auc or {}).get("ci95") or []
        if len(ci) != 2:
            return AI_NOT_TESTED
        return AI_NOT_VALIDATED if ci[0] <= 0.5 else AI_BELOW_BAR

    @property
    def shows_probability(self) -> bool:
        """A calibrated probability only from a validated version whose calibration was
        fitted on validation films (``ml.evidence.calibration_shown``)."""
        return self.validated_for_triage and evidence.calibration_shown(self.evidence)

    @property
    def probability_meaning(self) -> str:
        """What its calibrated probability is the chance of, in a reader's words."""
        if self.target == "malignant":
            return "Estimated chance of cancer"
        return "Estimated chance of an abnormal finding (benign or malignant)"

    def exam_scores(self, scores: np.ndarray) -> np.ndarray | None:
        """Exam scores 1-10 of these scores, None where the version may not rank cases."""
        if not self.validated_for_triage:
            return None
        return evidence.exam_scores(scores, self.evidence)

    def calibrated_probabilities(self, scores: np.ndarray) -> np.ndarray | None:
        """Calibrated probabilities of these scores, None unless ``shows_probability``."""
        if not self.shows_probability:
            return None
        return evidence.calibrated_probabilities(scores, self.evidence)

    @property
    def shows_heatmaps(self) -> bool:
        return evidence.heatmap_gate(self.evidence, settings.AI_GATES).passed

    @property
    def heatmap_reason(self) -> str:
        return _reason(evidence.heatmap_gate(self.evidence, settings.AI_GATES))

    @property
    def shows_marks(self) -> bool:
        return evidence.marks_gate(self.evidence, settings.AI_GATES).passed

    @property
    def marks_reason(self) -> str:
        return _reason(evidence.marks_gate(self.evidence, settings.AI_GATES))

    @property
    def gates(self) -> list[Verdict]:
        """Every gate with its rule, the figures it was judged on and the outcome."""
        return evidence.gates_verdicts(self.evidence, settings.AI_GATES)

    @property
    def target(self) -> str:
        """What its score was trained to find: "malignant", or "abnormal" (benign findings
        too), as its manifest states it (else its evidence); anything else reads as abnormal
        (``ml.evidence.target``), so nothing is called a chance of cancer by default."""
        stated = self.manifest.get("target") or (self.evidence or {}).get("target")
        return evidence.target({"target": stated})

    @property
    def manifest_subjects(self) -> dict[str, list[str]]:
        """The pseudonyms the manifest says the model was trained and calibrated on."""
        return manifest_schema.subjects(self.manifest)

    @property
    def excluded_subjects(self) -> frozenset[str]:
        """Women whose screens say nothing new about this version: it learnt from them."""
        return frozenset(p for people in self.manifest_subjects.values() for p in people)

    @property
    def film_auc(self) -> dict | None:
        """{"auc", "ci95", "films", "women", "method"} or None."""
        return self.evidence.get("film_auc") or None

    def band_description(self, band: str) -> str:
        return evidence.band_description(band, self.evidence) if band else ""

    @property
    def band_descriptions(self) -> list[str]:
        """What each validated band means on validation films ([] without bands, and for a
        version not validated for triage, which puts no case in a band)."""
        if not self.validated_for_triage or not self.evidence.get("bands"):
            return []
        return [self.band_description(band) for band in ("high", "intermediate", "low")]


def _reason(verdict: Verdict) -> str:
    return f"{verdict.figures}. {verdict.reason}"


def heatmap_upload_path(instance: AIResult, filename: str) -> str:
    return f"heatmaps/{instance.model_version_id}/{instance.image_id}.png"


class ImageResults(models.Manager["AIResult"]):
    """``AIResult.for_images``: per-image results, one model version's verdict on one film."""

    @staticmethod
    def condition(via: str = "") -> Q:
        """What makes a result an image's, seen from a relation (``via="results__"``)."""
        return Q(**{f"{via}image__isnull": False})

    def get_queryset(self) -> models.QuerySet[AIResult]:
        return super().get_queryset().filter(self.condition())


class CaseResults(models.Manager["AIResult"]):
    """``AIResult.for_cases``: per-case results, the maximum over a case's images."""

    def get_queryset(self) -> models.QuerySet[AIResult]:
        return super().get_queryset().filter(image__isnull=True)


class AIResult(models.Model):
    """One model version's verdict on one image, or on a whole case (image empty).

    ``for_images`` and ``for_cases`` say which; ``objects`` (the default, for relations and
    the admin) holds both.
    """

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="results"
    )
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="ai_results")
    image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.PROTECT, related_name="ai_results"
    )
    status = models.CharField(max_length=10, choices=AIStatus.choices, default=AIStatus.QUEUED)
    probability = models.FloatField(null=True, blank=True)
    heatmap = models.FileField(upload_to=heatmap_upload_path, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The Celery task that holds a running row: only a redelivery of that same message
    # may take it over, so a duplicate delivery never scores an image twice.
    task_id = models.CharField(max_length=64, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Per-image results: the most suspicious regions (ml.marks.RegionMark.to_dict, in the
    # stored image's pixels), shown only where the version's marks passed their test.
    marks = models.JSONField(default=list, blank=True)

    objects = models.Manager()
    for_images = ImageResults()
    for_cases = CaseResults()

    class Meta:
        indexes = [
            models.Index(fields=["status", "queued_at"], name="airesult_status_queued"),
            # A version's case scores for the auditor's figures, walked without the table.
            models.Index(
                fields=["model_version", "case"],
                include=["probability"],
                condition=Q(image__isnull=True, status=AIStatus.DONE),
                name="airesult_scores",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"],
                condition=Q(image__isnull=False),
                name="one_result_per_image_and_model",
            ),
            models.UniqueConstraint(
                fields=["case", "model_version"],
                condition=Q(image__isnull=True),
                name="one_case_result_per_model",
            ),
            models.CheckConstraint(
                condition=Q(probability__isnull=True)
                | (Q(probability__gte=0) & Q(probability__lte=1)),
                name="probability_in_unit",
            ),
        ]

    def __str__(self) -> str:
        return f"AI result {self.pk}"

    @property
    def scored_image(self) -> Image:
        """The image of an image result; asking a case result (no image) for it is a bug."""
        if self.image is None:
            raise ValueError(f"{self} is a case result: it has no image.")
        return self.image

    @property
    def exam_score(self) -> int | None:
        """1-10: the decile of the version's normal validation films this score falls in
        (None where the version is not validated for triage)."""
        if self.probability is None:
            return None
        found = self.model_version.exam_scores(np.asarray([self.probability], float))
        return None if found is None else int(found[0])

    @property
    def calibrated_probability(self) -> float | None:
        """None unless the version ``shows_probability``."""
        if self.probability is None:
            return None
        found = self.model_version.calibrated_probabilities(np.asarray([self.probability], float))
        return None if found is None else float(found[0])

    @property
    def band(self) -> str | None:
        """The band this score is in, "unvalidated" for a version not validated for triage."""
        if self.probability is None:
            return None
        return version_band(self.probability, self.model_version)

    @property
    def shown_marks(self) -> list[dict]:
        return list(self.marks) if self.model_version.shows_marks else []

    @property
    def caption(self) -> str:
        """How a film's own score is labelled beside it: no score at all from a version not
        validated for triage, only that it is not."""
        if self.probability is None:
            return ""
        if not self.model_version.validated_for_triage:
            return AI_CAPTION_NOT_VALIDATED
        score = self.exam_score
        return f"AI {score}/10" if score is not None else f"AI {self.probability:.3f}"

    @property
    def shows_heatmap(self) -> bool:
        return bool(self.heatmap) and self.model_version.shows_heatmaps


class Read(models.Model):
    """A radiologist's decision on a case; one per read kind."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reads")
    reader = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reads"
    )
    kind = models.CharField(max_length=12, choices=ReadKind.choices)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    # The case's overall category: the most concerning breast's for a structured read.
    birads = models.PositiveSmallIntegerField(choices=BiRads.choices)
    # Structured read (BI-RADS per breast, density once per case). Empty on reads recorded
    # before per-breast reading existed: those kept their case-level category only.
    birads_right = models.PositiveSmallIntegerField(choices=BiRads.choices, null=True, blank=True)
    birads_left = models.PositiveSmallIntegerField(choices=BiRads.choices, null=True, blank=True)
    density = models.CharField(max_length=1, choices=Density.choices, blank=True)
    ai_result = models.ForeignKey(
        AIResult,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reads",
        help_text="The case-level AI result the reader saw, if any.",
    )
    agrees_with_ai = models.BooleanField(null=True, blank=True)
    reason = models.TextField(blank=True)
    seconds_taken = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["case", "kind"], name="one_read_per_kind"),
        ]
        indexes = [models.Index(fields=["reader", "case"], name="read_reader_case")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of case {self.case_id}"

    @property
    def assessment(self) -> str:
        """The categories as the reader gave them: per breast, or the case's for old reads."""
        if self.birads_right is None or self.birads_left is None:
            return f"BI-RADS {self.birads} (whole case)"
        return f"BI-RADS R {self.birads_right}, L {self.birads_left}"


class UnaidedOpinion(models.Model):
    """A reader's opinion committed before the AI was shown to them (sequential reveal), or
    a no-recall the safety net questioned; the read that follows is their final one.

    Both stay: this row is the unaided opinion, ``read`` the final read (None until given),
    ``changed`` whether the decision moved and ``reason`` why (required for a change).
    """

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="unaided_opinions")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=12, choices=ReadKind.choices)
    trigger = models.CharField(max_length=12, choices=RevisionTrigger.choices)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    birads = models.PositiveSmallIntegerField(choices=BiRads.choices)
    fields = models.JSONField(default=dict, help_text="The read as the reader committed it.")
    ai_result = models.ForeignKey(
        AIResult, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The case-level AI result shown once the opinion was committed.",
    )  # fmt: skip
    ai_recall = models.BooleanField(null=True, blank=True)
    read = models.OneToOneField(
        "Read", null=True, blank=True, on_delete=models.PROTECT, related_name="unaided"
    )
    changed = models.BooleanField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["case", "reader", "kind"], name="one_unaided_opinion_per_read"
            ),
        ]

    def __str__(self) -> str:
        return f"Unaided {self.get_kind_display().lower()} of case {self.case_id}"


class Finding(models.Model):
    """What a reader saw in one breast that made them recall it, and where."""

    read = models.ForeignKey(Read, on_delete=models.PROTECT, related_name="findings")
    breast = models.CharField(max_length=1, choices=Breast.choices)
    finding = models.CharField(max_length=14, choices=FindingType.choices)
    site = models.CharField(max_length=14, choices=FindingSite.choices)
    depth = models.CharField(max_length=10, choices=FindingDepth.choices, blank=True)
    # Where the reader marked it, if they did: one film of the read's case and the mark's
    # points in that film's pixel coordinates (``MarkShape`` says how many and in what order).
    image = models.ForeignKey(
        "Image", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    mark_shape = models.CharField(max_length=8, choices=MarkShape.choices, blank=True)
    mark_points = models.JSONField(default=list, blank=True)

    class Meta:
        # Right first, as the films hang and the form asks ("R" sorts after "L").
        ordering = ["-breast", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(image__isnull=True) & Q(mark_shape=""))
                | (Q(image__isnull=False) & ~Q(mark_shape="")),
                name="finding_mark_has_image_and_shape",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_finding_display()}, {self.get_breast_display().lower()} {self.get_site_display()}"


class ReadDraft(models.Model):
    """A read as its reader is entering it, kept so that a sign-out loses nothing.

    Only its reader ever sees it, on their own case page: no other page, API answer, export,
    admin page or audit event shows it (it records nothing; the read does). Deleted when the
    reader records their read or the case closes.
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The read form's fields as the reader left them (names as the form posts them).
    fields = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reader", "case"], name="one_draft_per_reader_case"),
        ]

    def __str__(self) -> str:
        return f"draft read of case {self.case_id}"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionDenied("The audit trail is append-only.")

    def delete(self):
        raise PermissionDenied("The audit trail is append-only.")


class AuditEvent(models.Model):
    """Who did what to which object, when, and how it ended. Never changed, never deleted."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    outcome = models.CharField(
        max_length=10, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS
    )
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=40, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            models.Index(fields=["action", "created_at"], name="audit_action_time"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name or 'anonymous'} {self.action} {self.object_type} {self.object_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionDenied("The audit trail is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionDenied("The audit trail is append-only.")


class TokenExpiry(models.Model):
    """When an API token issued by an admin stops working, and who issued it.

    DRF's token has no expiry of its own; a token without this row (made outside the admin)
    expires ``API_TOKEN_DAYS`` after it was created (``screening.accounts.token_expires_at``).
    """

    token = models.OneToOneField(
        "authtoken.Token", primary_key=True, on_delete=models.CASCADE, related_name="expiry"
    )
    expires_at = models.DateTimeField()
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "token expiries"

    def __str__(self) -> str:
        return f"token of user {self.token.user_id} expires {self.expires_at:%Y-%m-%d %H:%M}"


class PendingRole(models.Model):
    """A role the account holds (its group) that gives nothing yet: an admin granted it, or
    set the account's password while it held it, and a second admin has not confirmed it.

    The group alone, without this row, is a role in force: the command line (``bootstrap_demo``,
    ``confirm_roles``) is the install-time path and needs no second person.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pending_roles"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    granted_at = models.DateTimeField()
    reason = models.CharField(max_length=20, choices=PendingReason.choices)

    class Meta:
        ordering = ["granted_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["user", "role"], name="pending_role_once"),
        ]

    def __str__(self) -> str:
        return f"{self.role} of user {self.user_id}, awaiting a second admin"


class PendingToken(models.Model):
    """An API token an admin issued for someone else: no key exists until its holder signs in
    and confirms it (the key is then shown to them once), so the admin never holds it. The
    holder's current token works until then."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="pending_token",
    )
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    issued_at = models.DateTimeField()
    days = models.PositiveSmallIntegerField()

    def __str__(self) -> str:
        return f"API token for user {self.user_id}, awaiting its holder"


class ApiToken(TokenProxy):
    """DRF's token as the admin shows it: named by its user, never by its key.

    DRF's own ``__str__`` is the key, which the admin would print on every page and into its
    log; the key is shown once, when it is issued. Like ``TokenProxy``, the admin addresses it
    by its user's id, so the key is never in a URL either.
    """

    class Meta:
        proxy = True
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"API token of user {self.user_id}"


class TriageProposal(models.Model):
    """An admin's proposal to switch a version on for triage on its figures on this site's
    screens, waiting for an auditor to confirm it (``screening.audit.triage_switch``)."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="triage_proposals"
    )
    local = models.JSONField(default=dict)  # the local figures it was proposed on
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=10, choices=ProposalStatus.choices, default=ProposalStatus.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version"],
                condition=Q(status=ProposalStatus.PENDING),
                name="one_pending_triage_proposal",
            )
        ]

    def __str__(self) -> str:
        return f"Triage proposal {self.pk} for model version {self.model_version_id}"


class DriftAlert(models.Model):
    """One group's week whose AI scores drifted past the site's levels, for one version.

    The unique key makes raising an alert idempotent: however often the page is computed
    or the sweep runs, a group's week is alerted (and audited) once.
    """

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    group_by = models.CharField(max_length=16, choices=DriftGroupBy.choices)
    group = models.CharField(max_length=64)
    week = models.DateField(help_text="The Monday the week starts on.")
    films = models.PositiveIntegerField()
    psi = models.FloatField()
    ks_p = models.FloatField()
    reference = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "group_by", "group", "week"], name="one_drift_alert"
            ),
        ]

    def __str__(self) -> str:
        return f"Drift alert {self.pk}"


class ReaderSettings(models.Model):
    """A reader's own reading-room choices, kept on the server so they follow the reader
    from workstation to workstation. No row means every default."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="reader_settings",
    )
    open_next_after_read = models.BooleanField(
        default=True, help_text="After a read is recorded, open the next case of the worklist."
    )
    hanging_protocol = models.CharField(
        max_length=8,
        choices=HangingProtocol.choices,
        default=HangingProtocol.ROW,
        help_text="The hanging protocol the case page opens in.",
    )

    def __str__(self) -> str:
        return f"Reading settings of user {self.user_id}"


class WorkerHeartbeat(models.Model):
    """One row per running Celery worker, touched every ``AI_WORKER_HEARTBEAT_SECONDS``.

    The broker's ping needs a broadcast exchange the embedded filesystem broker lacks; the
    database is there with every broker, so the queue page counts live workers from here.
    """

    name = models.CharField(max_length=255, unique=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.name


class PacsDelivery(models.Model):
    """One object of a closed case (the AI's SR or SC, the readers' report) on its way to
    one PACS destination (settings.PACS_DESTINATIONS): sent until the PACS acknowledges it.

    One row per object and destination (the unique constraint), claimed atomically by the
    worker that sends it, so an object is never sent twice at once; its SOP Instance UID
    derives from what it carries, so a resend after a lost acknowledgement is the same
    instance and the PACS keeps one copy.
    """

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="pacs_deliveries")
    kind = models.CharField(max_length=8, choices=DeliveredObject.choices)
    # Which object of its kind: the AI result it carries (``ai_sr:12``, ``ai_sc:34``) or
    # ``read_sr`` (a case has one final report).
    object_key = models.CharField(max_length=40)
    destination = models.CharField(max_length=32)  # a PACS_DESTINATIONS name
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sop_instance_uid = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["case_id", "pk"]
        verbose_name_plural = "PACS deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["case", "object_key", "destination"], name="one_delivery_per_object"
            ),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.kind} to {self.destination})"
