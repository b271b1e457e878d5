"""Results back into the woman's study: what a closed case sends to the PACS, where, and how.

When a case closes its results become final (a closed case is never rescored, its reads never
change), so that is when they leave: the AI's SR, an SC per image whose version's evidence
lets readers see its heatmap, and the readers' report SR. Each object goes to every
destination of ``settings.PACS_DESTINATIONS``, by C-STORE (``dicom://AET@host:port``) or
STOW-RS (``http(s)://…/dicom-web/``), as one ``PacsDelivery`` row per object and destination,
sent until the PACS acknowledges it (``screening.interop.actions.deliver``).

Only clinical-mode studies are sent. A research-mode study was stored de-identified: its UIDs
are remapped and its patient module pseudonymised, so an object built on it would not land in
the woman's study but make a new study on the PACS under a pseudonym (a phantom patient
beside the real one). Its rows are kept as *withheld*, with the reason, so an admin sees why.
The mode is the study's own (recorded at ingest), never the site's now.

Never sent twice: the row is unique per object and destination and claimed atomically
(pending or due for retry → sending) by the one worker that sends it; the object's SOP
Instance UID derives from what it carries, so a resend after a lost acknowledgement (a worker
that died between the PACS's answer and the row's update) is the same instance, and the PACS
keeps one copy.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from .. import events
from ..ai.queries import case_ai_results
from ..choices import (
    OUTSTANDING_DELIVERIES,
    AIStatus,
    DeliveredObject,
    DeliveryStatus,
    IdentityMode,
)
from ..models import Case, PacsDelivery
from ..ops.metrics import PACS_SEND_ATTEMPTS
from .read_report import report_study

log = logging.getLogger(__name__)

# The Celery tasks (``screening.interop.tasks``), sent by name: this module never imports them.
DELIVER_TASK = "screening.deliver_to_pacs"
WITHHELD_RESEARCH = (
    "Not sent: this study was stored de-identified (research mode), so its UIDs and patient "
    "module are not the woman's and the object would make a study of its own on the PACS."
)
# PS3.4 Annex B.2.3: the warning statuses of a C-STORE still mean "stored".
STORE_WARNINGS = frozenset({0xB000, 0xB006, 0xB007})
SECONDS = 30  # network timeouts of one send


class SendFailed(Exception):
    """The PACS did not acknowledge the object (unreachable, refused, failed status)."""


@dataclass(frozen=True)
class Destination:
    """One configured PACS: a C-STORE peer or a STOW-RS root."""

    name: str
    protocol: str  # "dimse" or "stow-rs"
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""  # STOW-RS root, without credentials
    authorization: str = ""  # the HTTP Authorization header, if any

    def describe(self) -> str:
        """Where it sends, for admins: never the credentials."""
        if self.protocol == "dimse":
            return f"C-STORE to {self.ae_title} at {self.host}:{self.port}"
        return f"STOW-RS to {self.url}"


def parse_destination(entry: str, auth: str | None = None) -> Destination:
    """``name=dicom://AET@host:port`` or ``name=https://[user:pass@]host/dicom-web/``."""
    name, _, url = (part.strip() for part in entry.partition("="))
    parts = urllib.parse.urlsplit(url)
    if not name or len(name) > 32 or not url:
        raise ImproperlyConfigured(f"PACS_DESTINATIONS entry {name or entry!r} is not name=URL.")
    if parts.scheme == "dicom":
        if not parts.username or not parts.hostname or not parts.port:
            raise ImproperlyConfigured(
                f"PACS destination {name!r}: a C-STORE peer is dicom://AETITLE@host:port."
            )
        return Destination(name, "dimse", parts.username[:16], parts.hostname, parts.port)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(
            f"PACS destination {name!r}: the URL must be dicom://, http:// or https://."
        )
    if parts.username:
        auth = (
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        )
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    root = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    header = f"Basic {base64.b64encode(auth.encode()).decode()}" if auth else ""
    return Destination(name, "stow-rs", url=root, authorization=header)


def destinations() -> list[Destination]:
    """The configured destinations (read at each use, so tests and a restart see changes)."""
    found = [
        parse_destination(entry, settings.PACS_DESTINATION_AUTH.get(entry.partition("=")[0]))
        for entry in settings.PACS_DESTINATIONS
    ]
    if len({d.name for d in found}) != len(found):
        raise ImproperlyConfigured("PACS_DESTINATIONS names must differ.")
    return found


def check_destinations(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """A Django system check (``manage.py check``, and ``migrate`` before every start): a
    malformed PACS_DESTINATIONS stops the deployment instead of every later delivery."""
    try:
        destinations()
    except ImproperlyConfigured as error:
        return [Error(str(error), id="screening.E101")]
    return []


def destination_named(name: str) -> Destination | None:
    return next((d for d in destinations() if d.name == name), None)


# --- What a closed case sends ----------------------------------------------------------


def case_objects(case: Case) -> list[tuple[str, str]]:
    """(kind, object key) of every object the closed case sends: the AI's SR where a finished
    AI result exists, an SC per image whose heatmap readers may see (the version's evidence,
    as the heatmap export asks), and the readers' report. None without a DICOM study."""
    if report_study(case) is None:
        return []
    found: list[tuple[str, str]] = []
    shown = case.ai_result
    if shown is not None and shown.status == AIStatus.DONE and shown.probability is not None:
        found.append((DeliveredObject.AI_REPORT, f"ai_sr:{shown.pk}"))
        for result in sorted(case_ai_results(case).values(), key=lambda r: r.pk):
            if result.heatmap and result.shows_heatmap and result.scored_image.study.is_dicom:
                found.append((DeliveredObject.AI_HEATMAP, f"ai_sc:{result.pk}"))
    found.append((DeliveredObject.READ_REPORT, "read_sr"))
    return found


def on_case_closed(sender: object, case: Case, **kwargs: object) -> None:
    """``hooks.case_closed``'s receiver: a closed case's results go back into the PACS."""
    queue_case(case)


def queue_case(case: Case) -> list[int]:
    """Create the closed case's delivery rows (idempotent) and send their jobs after commit.

    Called inside the transaction that closes the case; withheld rows (research mode) are
    written and audited at once, so the case's send status says why nothing left."""
    study = report_study(case)
    try:
        targets = destinations()
    except ImproperlyConfigured as error:  # never a reason to refuse the read that closed it
        log.error("PACS_DESTINATIONS is wrong, case %s queued nothing: %s", case.pk, error)
        return []
    if study is None or not targets:
        return []
    withheld = study.identity_mode != IdentityMode.CLINICAL
    known = set(PacsDelivery.objects.filter(case=case).values_list("object_key", "destination"))
    rows = [
        PacsDelivery(
            case=case,
            kind=kind,
            object_key=key,
            destination=target.name,
            status=DeliveryStatus.WITHHELD if withheld else DeliveryStatus.PENDING,
            last_error=WITHHELD_RESEARCH if withheld else "",
        )
        for kind, key in case_objects(case)
        for target in targets
        if (key, target.name) not in known
    ]
    PacsDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    new = [
        delivery
        for delivery in PacsDelivery.objects.filter(case=case).order_by("pk")
        if (delivery.object_key, delivery.destination) not in known
    ]
    if withheld:
        for delivery in new:
            events.pacs_delivery_withheld(delivery, WITHHELD_RESEARCH)
        return []
    pending = [d.pk for d in new if d.status == DeliveryStatus.PENDING]
    transaction.on_commit(lambda: [dispatch(pk) for pk in pending])
    return pending


def dispatch(delivery_id: int) -> bool:
    """Send one delivery's job; with the broker down the row stays due and the sweep
    (``due_deliveries``) sends it once the broker is back."""
    try:
        current_app.send_task(DELIVER_TASK, args=[delivery_id], retry=False)
    except Exception:  # kombu raises several connection error types
        log.warning("Broker unavailable: PACS delivery %s waits for the sweep", delivery_id)
        return False
    return True


def due_deliveries() -> list[int]:
    """Deliveries to send now: pending or failed with their backoff over, and sends whose
    worker never answered (claimed longer than PACS_SEND_TIMEOUT_SECONDS ago)."""
    return list(
        PacsDelivery.objects.filter(_claimable(timezone.now())).values_list("pk", flat=True)
    )


def _claimable(now: datetime) -> Q:
    stale = now - timedelta(seconds=settings.PACS_SEND_TIMEOUT_SECONDS)
    waiting = Q(status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING])
    return (waiting & Q(next_attempt_at__lte=now)) | Q(
        status=DeliveryStatus.SENDING, claimed_at__lt=stale
    )


def claim(delivery_id: int) -> PacsDelivery | None:
    """Take one delivery for sending, atomically: None if it is sent, withheld, not yet
    due, or another worker holds it. Counts the attempt."""
    now = timezone.now()
    taken = (
        PacsDelivery.objects.filter(_claimable(now), pk=delivery_id)
        .update(status=DeliveryStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    )  # fmt: skip
    if not taken:
        return None
    return PacsDelivery.objects.select_related("case").get(pk=delivery_id)


def bring_forward(case_id: int, delivery_id: int) -> tuple[PacsDelivery, datetime | None] | None:
    """Make a retrying delivery due now (an admin's "send again now"): the delivery and when
    it was due, or None if it is not waiting for a retry. Only the schedule moves: the
    attempt still goes through ``claim``, so a row being sent or sent is never sent twice."""
    delivery = PacsDelivery.objects.filter(pk=delivery_id, case_id=case_id).first()
    if delivery is None or delivery.status != DeliveryStatus.RETRYING:
        return None
    was_due_at, now = delivery.next_attempt_at, timezone.now()
    moved = PacsDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.RETRYING, next_attempt_at=was_due_at
    ).update(next_attempt_at=now)
    if not moved:  # claimed (or moved) meanwhile
        return None
    delivery.next_attempt_at = now
    return delivery, was_due_at


def backoff_seconds(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling, capped."""
    base, cap = settings.PACS_RETRY_BASE_SECONDS, settings.PACS_RETRY_MAX_SECONDS
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))


def mark_sent(delivery: PacsDelivery, sop_instance_uid: str) -> bool:
    """The PACS acknowledged the object; False where this worker's claim was lost meanwhile
    (the row was taken again as stale and someone else finished it)."""
    PACS_SEND_ATTEMPTS.labels(delivery.destination, "sent").inc()
    delivery.status, delivery.sop_instance_uid = DeliveryStatus.SENT, sop_instance_uid
    delivery.acknowledged_at, delivery.last_error = timezone.now(), ""
    return bool(
        PacsDelivery.objects.filter(pk=delivery.pk, claimed_at=delivery.claimed_at)
        .exclude(status=DeliveryStatus.SENT)
        .update(
            status=DeliveryStatus.SENT,
            sop_instance_uid=sop_instance_uid,
            acknowledged_at=delivery.acknowledged_at,
            last_error="",
        )
    )


def mark_failed(delivery: PacsDelivery, error: str, sop_instance_uid: str = "") -> None:
    """Not acknowledged: due again after the backoff, with the reason for admins."""
    PACS_SEND_ATTEMPTS.labels(delivery.destination, "failed").inc()
    delivery.status, delivery.last_error = DeliveryStatus.RETRYING, error[:1000]
    delivery.next_attempt_at = timezone.now() + timedelta(
        seconds=backoff_seconds(delivery.attempts)
    )
    PacsDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING).update(
        status=delivery.status,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at,
        sop_instance_uid=sop_instance_uid or F("sop_instance_uid"),
    )


# --- Sending -----------------------------------------------------------------------------


def send(destination: Destination, content: bytes) -> None:
    """Store one Part 10 object on the destination; raises SendFailed unless acknowledged."""
    if destination.protocol == "dimse":
        c_store(destination, content)
    else:
        stow_rs(destination, content)


def c_store(destination: Destination, content: bytes) -> None:
    """One association, one C-STORE, as this portal's AE title (DICOM_NODE_AE_TITLE)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    dataset = pydicom.dcmread(io.BytesIO(content))
    syntaxes = list(
        dict.fromkeys(
            [dataset.file_meta.TransferSyntaxUID, ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
    )
    ae = AE(ae_title=settings.DICOM_NODE_AE_TITLE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = SECONDS
    ae.add_requested_context(dataset.SOPClassUID, syntaxes)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        how = "rejected" if assoc.is_rejected else "not established (unreachable?)"
        raise SendFailed(f"Association with {destination.ae_title} {how}.")
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    code = int(status.Status) if "Status" in status else None
    if code is None:
        raise SendFailed("No C-STORE answer (the association ended or timed out).")
    if code != 0x0000 and code not in STORE_WARNINGS:
        comment = str(status.get("ErrorComment", ""))
        raise SendFailed(f"C-STORE failed with status 0x{code:04X} {comment}".strip())


def stow_rs(destination: Destination, content: bytes) -> None:
    """One STOW-RS request (PS3.18 10.5) holding the one instance."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    if destination.authorization:
        headers["Authorization"] = destination.authorization
    request = urllib.request.Request(  # noqa: S310 (the root is http(s), parse_destination)
        f"{destination.url}/studies", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=SECONDS) as answer:  # noqa: S310
            status, payload = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        raise SendFailed(f"STOW-RS answered HTTP {error.code}.") from None
    except (urllib.error.URLError, OSError) as error:
        raise SendFailed(f"STOW-RS unreachable ({type(error).__name__}).") from None
    if status != 200 or _stow_failures(payload):
        raise SendFailed(f"STOW-RS answered HTTP {status} with a failed instance.")


def _stow_failures(payload: bytes) -> bool:
    """Whether the STOW-RS answer lists a failed SOP instance (Failed SOP Sequence)."""
    try:
        answer = json.loads(payload or b"{}")
    except ValueError:
        return False
    return bool(isinstance(answer, dict) and answer.get("00081198", {}).get("Value"))


# --- Reads -------------------------------------------------------------------------------


def case_deliveries(case: Case) -> list[PacsDelivery]:
    """A case's deliveries, for its send status (admins' page and API)."""
    return list(PacsDelivery.objects.filter(case=case).order_by("kind", "object_key", "pk"))


def case_send_note(case: Case) -> str:
    """Why a case has no deliveries, in plain words ("" where it has some)."""
    if PacsDelivery.objects.filter(case=case).exists():
        return ""
    if not settings.PACS_DESTINATIONS:
        return "No PACS destination is configured (PACS_DESTINATIONS): nothing is sent."
    if report_study(case) is None:
        return "This case was not uploaded as DICOM: there is no study on the PACS to send to."
    if case.closed_at is None:
        return "Results are sent when the case closes."
    return "Nothing was queued for this case."


def totals() -> list[tuple[str, str, int]]:
    """(destination, status label, count) of every delivery, for the overview."""
    labels = dict(DeliveryStatus.choices)
    counts = PacsDelivery.objects.values_list("destination", "status").annotate(n=Count("pk"))
    return [(d, labels.get(s, s), n) for d, s, n in counts.order_by("destination", "status")]


def outstanding(limit: int = 200) -> list[PacsDelivery]:
    """Deliveries not yet acknowledged, oldest first: the admins' overview."""
    rows = PacsDelivery.objects.filter(status__in=OUTSTANDING_DELIVERIES).order_by("created_at")
    return list(rows[:limit])
