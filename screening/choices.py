"""The vocabulary of screening: every status, code and role lives here, never as bare strings."""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

from django.db import models

if TYPE_CHECKING:
    import numpy as np


class Role(models.TextChoices):
    RADIOLOGIST = "radiologist", "Radiologist"
    ADMIN = "admin", "Admin"
    AUDITOR = "auditor", "Auditor"
    # Arbitrates disagreeing double reads only: granted where a site has no third radiologist.
    ARBITRATOR = "arbitrator", "Arbitrator"


# Roles an admin's grant alone does not give: reading (clinical power) and the admin role,
# which confirms them (or one admin could make a second and confirm their own grants with it).
# A second admin confirms each (screening.accounts); the command line gives them at once.
SECOND_ADMIN_ROLES = (Role.RADIOLOGIST, Role.ARBITRATOR, Role.ADMIN)


class PendingReason(models.TextChoices):
    GRANTED = "granted", "Granted by an admin"
    PASSWORD_SET = "password_set", "Password set by an admin"


class CaseStatus(models.TextChoices):
    AWAITING_AI = "awaiting_ai", "Awaiting AI"
    READY = "ready", "Ready to read"
    FIRST_READ_DONE = "first_read_done", "First read done"
    ARBITRATION = "arbitration", "Arbitration"
    CLOSED = "closed", "Closed"


# Cases a radiologist can still act on, in the order of the reading pathway.
READABLE_STATUSES = (
    CaseStatus.AWAITING_AI,
    CaseStatus.READY,
    CaseStatus.FIRST_READ_DONE,
    CaseStatus.ARBITRATION,
)


class Outcome(models.TextChoices):
    NORMAL = "normal", "Normal"
    BENIGN = "benign", "Benign"
    MALIGNANT = "malignant", "Malignant"


class OutcomeSource(models.TextChoices):
    BIOPSY = "biopsy", "Biopsy"
    FOLLOW_UP = "follow_up", "Follow-up"


class Modality(models.TextChoices):
    MG = "MG", "Mammography (MG)"
    OTHER = "OT", "Other (OT)"


class SourceFormat(models.TextChoices):
    PNG = "png", "PNG"
    JPEG = "jpeg", "JPEG"
    DICOM = "dicom", "DICOM"
    TFRECORD = "tfrecord", "DDSM TFRecord"
    SYNTHETIC = "synthetic", "Synthetic (demo)"


class IdentityMode(models.TextChoices):
    """How a site ingests DICOM (settings.IDENTITY_MODE), recorded on each study at ingest."""

    RESEARCH = "research", "Research (de-identified)"
    CLINICAL = "clinical", "Clinical (identity kept)"


class Laterality(models.TextChoices):
    LEFT = "L", "Left"
    RIGHT = "R", "Right"
    UNKNOWN = "", "Unknown"


class View(models.TextChoices):
    """Mammography views as DICOM ViewPosition spells them (CID 4014 abbreviations)."""

    CC = "CC", "Craniocaudal (CC)"
    MLO = "MLO", "Mediolateral oblique (MLO)"
    ML = "ML", "Mediolateral (ML)"
    LM = "LM", "Lateromedial (LM)"
    LMO = "LMO", "Lateromedial oblique (LMO)"
    XCCL = "XCCL", "Exaggerated CC, lateral (XCCL)"
    XCCM = "XCCM", "Exaggerated CC, medial (XCCM)"
    FB = "FB", "From below (FB)"
    SIO = "SIO", "Superolateral to inferomedial oblique (SIO)"
    CV = "CV", "Cleavage (CV)"
    AT = "AT", "Axillary tail (AT)"
    UNKNOWN = "", "Unknown"


class Architecture(models.TextChoices):
    CUSTOM_CNN = "custom_cnn", "Custom CNN"
    VGG16 = "vgg16", "VGG16"
    RESNET50V2 = "resnet50v2", "ResNet50V2"
    EFFICIENTNETV2B0 = "efficientnetv2b0", "EfficientNetV2-B0"
    # built elsewhere (a vendor's, another machine's): the manifest says how to feed it
    EXTERNAL = "external", "Brought-in model"


class AIStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class SilentTrial(models.TextChoices):
    """A model version's silent trial: it scores new studies for auditors only.

    Running or stopped, its results are never shown to a reader; activating the version
    ends the trial and lets its results be shown.
    """

    NONE = "", "None"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Decision(models.TextChoices):
    RECALL = "recall", "Recall"
    NO_RECALL = "no_recall", "No recall"


class ReadKind(models.TextChoices):
    FIRST = "first", "First read"
    SECOND = "second", "Second read"
    ARBITRATION = "arbitration", "Arbitration"


class ReadingPolicy(models.TextChoices):
    """How a site reads its screens (``SitePolicy``; the rules in ``pathway.py``).

    Every policy but standard uses the AI, and is refused unless the active version is
    validated for triage.
    """

    STANDARD = "standard", "Standard double reading"
    ROUTING = "routing", "Routing by AI (MASAI): high band double-read, others single-read"
    NORMAL_TRIAGE = "normal_triage", "Normal triage (PRAIM): low band tagged AI: normal"
    SAFETY_NET = "safety_net", "Safety net (PRAIM): a no-recall on a high-band exam is questioned"
    AI_SECOND_READER = "ai_second_reader", "AI as second reader, a human arbitrates"


# The policies that need the AI's band or decision to route or prompt a read.
AI_POLICIES = (
    ReadingPolicy.ROUTING,
    ReadingPolicy.NORMAL_TRIAGE,
    ReadingPolicy.SAFETY_NET,
    ReadingPolicy.AI_SECOND_READER,
)


class AIReveal(models.TextChoices):
    """When a reader is shown the AI (a site's choice, kept on ``SitePolicy``)."""

    CONCURRENT = "concurrent", "With the images (concurrent)"
    SEQUENTIAL = "sequential", "After an unaided opinion is committed (sequential)"


class CaseRoute(models.TextChoices):
    """How many human reads a case gets, decided once, before any read (``pathway.route``)."""

    UNDECIDED = "", "Not decided yet (AI awaited)"
    DOUBLE = "double", "Double reading"
    SINGLE = "single", "Single reading"
    AI_SECOND = "ai_second", "One reader, the AI as second reader"


class RevisionTrigger(models.TextChoices):
    """Why a reader was shown the AI after committing an unaided opinion."""

    SEQUENTIAL = "sequential", "Sequential reveal"
    SAFETY_NET = "safety_net", "Safety net"


class BiRads(models.IntegerChoices):
    INCOMPLETE = 0, "0 — Incomplete, needs further imaging"
    NEGATIVE = 1, "1 — Negative"
    BENIGN = 2, "2 — Benign"
    PROBABLY_BENIGN = 3, "3 — Probably benign"
    SUSPICIOUS = 4, "4 — Suspicious"
    HIGHLY_SUGGESTIVE = 5, "5 — Highly suggestive of malignancy"
    KNOWN_MALIGNANCY = 6, "6 — Known biopsy-proven malignancy"


# A screening decision must agree with its BI-RADS category.
BIRADS_FOR_DECISION = {
    Decision.NO_RECALL: {BiRads.NEGATIVE, BiRads.BENIGN},
    Decision.RECALL: {
        BiRads.INCOMPLETE,
        BiRads.PROBABLY_BENIGN,
        BiRads.SUSPICIOUS,
        BiRads.HIGHLY_SUGGESTIVE,
        BiRads.KNOWN_MALIGNANCY,
    },
}


# BI-RADS categories from least to most concerning (ACR BI-RADS Atlas, 5th ed.): a case's
# overall assessment is its most concerning breast's.
BIRADS_CONCERN_ORDER = (
    BiRads.NEGATIVE,
    BiRads.BENIGN,
    BiRads.PROBABLY_BENIGN,
    BiRads.KNOWN_MALIGNANCY,
    BiRads.INCOMPLETE,
    BiRads.SUSPICIOUS,
    BiRads.HIGHLY_SUGGESTIVE,
)

# Recalled breasts with these categories must name what was seen (0 may be a technical
# recall, 6 a known cancer).
BIRADS_NEEDING_FINDINGS = {BiRads.PROBABLY_BENIGN, BiRads.SUSPICIOUS, BiRads.HIGHLY_SUGGESTIVE}
# A breast assessed negative has nothing in it to record: a finding there contradicts the read.
BIRADS_REFUSING_FINDINGS = {BiRads.NEGATIVE}


class Density(models.TextChoices):
    """ACR breast composition, recorded once per case."""

    A = "a", "a — almost entirely fatty"
    B = "b", "b — scattered areas of fibroglandular density"
    C = "c", "c — heterogeneously dense, may obscure small masses"
    D = "d", "d — extremely dense, lowers the sensitivity of mammography"


class Breast(models.TextChoices):
    RIGHT = "R", "Right"
    LEFT = "L", "Left"


class FindingType(models.TextChoices):
    MASS = "mass", "Mass"
    CALCIFICATION = "calcification", "Calcification"
    ASYMMETRY = "asymmetry", "Asymmetry"
    DISTORTION = "distortion", "Architectural distortion"


class FindingSite(models.TextChoices):
    """Where in the breast: clock face as the reader faces the woman, or a quadrant."""

    O1 = "1", "1 o'clock"
    O2 = "2", "2 o'clock"
    O3 = "3", "3 o'clock"
    O4 = "4", "4 o'clock"
    O5 = "5", "5 o'clock"
    O6 = "6", "6 o'clock"
    O7 = "7", "7 o'clock"
    O8 = "8", "8 o'clock"
    O9 = "9", "9 o'clock"
    O10 = "10", "10 o'clock"
    O11 = "11", "11 o'clock"
    O12 = "12", "12 o'clock"
    UOQ = "UOQ", "Upper outer quadrant"
    UIQ = "UIQ", "Upper inner quadrant"
    LOQ = "LOQ", "Lower outer quadrant"
    LIQ = "LIQ", "Lower inner quadrant"
    RETROAREOLAR = "retroareolar", "Retroareolar"
    AXILLARY_TAIL = "axillary_tail", "Axillary tail"


class FindingDepth(models.TextChoices):
    ANTERIOR = "anterior", "Anterior third"
    MIDDLE = "middle", "Middle third"
    POSTERIOR = "posterior", "Posterior third"


class MarkShape(models.TextChoices):
    """How a reader marks a finding on a film (Cornerstone3D's probe, ellipse and arrow).

    Each stores its points in the stored film's pixel coordinates, (0, 0) the top left
    corner of the top left pixel, as a DICOM SR's SCOORD does: a point one, an arrow two
    (its tail, then the head that points at the finding), an ellipse four (the ends of one
    axis, then the ends of the other).
    """

    POINT = "point", "Point"
    ELLIPSE = "ellipse", "Ellipse"
    ARROW = "arrow", "Arrow"


# How many points each mark shape stores (see MarkShape).
MARK_POINTS = {MarkShape.POINT: 1, MarkShape.ARROW: 2, MarkShape.ELLIPSE: 4}


class RiskBand(models.TextChoices):
    HIGH = "high", "High"
    INTERMEDIATE = "intermediate", "Intermediate"
    LOW = "low", "Low"
    PENDING = "pending", "AI pending"
    FAILED = "failed", "AI failed"
    # A version not validated for triage puts its cases in no band: nothing ranks them.
    UNVALIDATED = "unvalidated", "AI not validated"


RANKING_BANDS = (RiskBand.HIGH, RiskBand.INTERMEDIATE, RiskBand.LOW)
"""The bands that rank cases: only a version validated for triage gives them."""


@overload
def ai_recalls(score: float, threshold: float) -> bool: ...
@overload
def ai_recalls(score: np.ndarray, threshold: float) -> np.ndarray: ...
def ai_recalls(score: float | np.ndarray, threshold: float) -> bool | np.ndarray:
    """The AI says recall where its score is at or above its version's threshold: the one
    statement of that rule, for the case (``Case.ai_recommends_recall``), the reports' rows
    and the what-if decisions (``audit.stats.decisions_at``), one score or an array."""
    return score >= threshold


class AuditAction(models.TextChoices):
    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login_failed", "Failed login"
    LOGOUT = "logout", "Logged out"
    CASE_OPENED = "case_opened", "Case opened"
    READ_RECORDED = "read_recorded", "Read recorded"
    READ_CONFLICT = "read_conflict", "Read refused (conflict)"
    STUDY_UPLOADED = "study_uploaded", "Study uploaded"
    UPLOAD_REJECTED = "upload_rejected", "Upload rejected"
    MODEL_ACTIVATED = "model_activated", "Model activated"
    MODEL_EVIDENCE_LOADED = "model_evidence", "Model evidence loaded"
    MODEL_REGISTERED = "model_registered", "Model registered"
    MODEL_REFUSED = "model_refused", "Model registration refused"
    AI_RETRIED = "ai_retried", "AI retried"
    EXPORT = "export", "Export"
    OUTCOME_RECORDED = "outcome_recorded", "Outcome recorded"
    DICOM_EXPORTED = "dicom_exported", "AI result exported as DICOM"
    DICOM_EXPORT_REFUSED = "dicom_export_refused", "DICOM export refused"
    ROLES_CHANGED = "roles_changed", "Roles changed"
    PASSWORD_SET = "password_set", "Password set by an admin"
    TOKEN_ISSUED = "token_issued", "API token issued"
    TOKEN_REVOKED = "token_revoked", "API token revoked"
    LOGIN_LOCKED_OUT = "login_locked_out", "Sign-in locked out"
    LOGIN_UNLOCKED = "login_unlocked", "Sign-in unlocked"
    ROLE_CONFIRMED = "role_confirmed", "Role confirmed by a second admin"
    ROLE_REFUSED = "role_refused", "Role refused by a second admin"
    TOKEN_CONFIRMED = "token_confirmed", "API token confirmed by its holder"
    TOKEN_REFUSED = "token_refused", "API token refused by its holder"
    TRIAGE_PROPOSED = "triage_proposed", "Triage on local evidence proposed"
    TRIAGE_CONFIRMED = "triage_confirmed", "Triage on local evidence confirmed"
    TRIAGE_OFF = "triage_off", "Triage on local evidence switched off"
    DRIFT_ALERT = "drift_alert", "AI scores drifted"
    SILENT_TRIAL_STARTED = "silent_trial_started", "Silent trial started"
    SILENT_TRIAL_STOPPED = "silent_trial_stopped", "Silent trial stopped"
    DICOM_ASSOCIATION = "dicom_association", "DICOM association ended"
    DICOM_ASSOCIATION_REJECTED = "dicom_rejected", "DICOM association rejected"
    DICOM_REFUSED = "dicom_refused", "DICOM instance or study refused"
    POLICY_SET = "policy_set", "Reading policy set"
    OPINION_COMMITTED = "opinion_committed", "Unaided opinion committed"
    PRIORS_FETCHED = "priors_fetched", "Prior studies fetched from the PACS"
    PRIOR_OPENED = "prior_opened", "Prior study viewed"
    PACS_DELIVERED = "pacs_delivered", "Result delivered to the PACS"
    PACS_DELIVERY_FAILED = "pacs_failed", "PACS delivery failed (will retry)"
    PACS_DELIVERY_WITHHELD = "pacs_withheld", "PACS delivery withheld"
    PACS_SEND_NOW = "pacs_send_now", "PACS delivery's next attempt brought forward"


class DeliveryStatus(models.TextChoices):
    """Where one object's way to one PACS destination stands (``PacsDelivery``)."""

    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"  # claimed by a worker
    RETRYING = "retrying", "Failed, retrying"
    SENT = "sent", "Sent (acknowledged)"
    # Never sent, by design: a research-mode study's remapped UIDs and pseudonyms would
    # make a study of their own on the PACS, never land in the woman's.
    WITHHELD = "withheld", "Not sent (research mode)"


# Deliveries a worker still has to take or finish.
OUTSTANDING_DELIVERIES = (
    DeliveryStatus.PENDING,
    DeliveryStatus.SENDING,
    DeliveryStatus.RETRYING,
)


class AssociationRefusal(models.TextChoices):
    """Why the DICOM node refused an association (audited, and counted in /metrics)."""

    NOT_ALLOWED = "not_allowed", "Caller not a configured peer (AE title or address)"
    CALLED_AE = "called_ae", "Called AE title not this node's"
    # Transient: the sender may try again later (A-ASSOCIATE-RJ, local limit exceeded).
    BUSY = "busy", "Node busy (DICOM_NODE_MAX_ASSOCIATIONS reached)"


class DeliveredObject(models.TextChoices):
    """What a delivery carries back into the woman's study."""

    AI_REPORT = "ai_sr", "AI result (SR)"
    AI_HEATMAP = "ai_sc", "AI heatmap (SC)"
    READ_REPORT = "read_sr", "Readers' final report (SR)"


class ProposalStatus(models.TextChoices):
    PENDING = "pending", "Waiting for an auditor"
    CONFIRMED = "confirmed", "Confirmed"
    WITHDRAWN = "withdrawn", "Withdrawn"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"


class DriftGroupBy(models.TextChoices):
    """What films are grouped by when their AI scores are watched for drift."""

    MANUFACTURER = "manufacturer", "Manufacturer"
    SCANNER_MODEL = "scanner_model", "Scanner model"
    SITE = "site", "Site"


class AgeBand(models.TextChoices):
    """A woman's age at her screen, in the bands screening programmes report by."""

    UNDER_50 = "under_50", "under 50"
    AGE_50_59 = "50_59", "50–59"
    AGE_60_69 = "60_69", "60–69"
    AGE_70_UP = "70_up", "70 and over"
    UNKNOWN = "unknown", "unknown"


class HangingProtocol(models.TextChoices):
    """How the case page hangs the films (``reading/hanging.py``, ``viewer/src/hanging.js``),
    in the order <kbd>L</kbd> cycles them. Each film fills its viewport's height."""

    ROW = "row", "1×4"
    CC = "cc", "CC pair"
    MLO = "mlo", "MLO pair"
    PRIOR = "prior", "Current and prior"
    SINGLE = "single", "Single film"
