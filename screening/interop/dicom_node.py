"""The DICOM node: a modality or PACS sends studies by C-STORE, as it would to any archive.

Only configured peers may associate (AE title *and* address); the node answers C-ECHO and
C-STORE of the image SOP classes the upload checks accept, in the transfer syntaxes they
decode. Instances arrive one C-STORE at a time, but a study is filed whole or not at all,
as every upload is: each instance is checked as it arrives (a failure is answered with a
DICOM failure status and refuses its whole study), kept aside per Study Instance UID, and
when the association ends each study goes through the same upload verb as the page, the API
and STOW-RS. It ends when the sender releases it, aborts it, or stays quiet for
DICOM_NODE_QUIET_SECONDS: an instance answered with success is filed whichever way.

Original identifiers never leave this module but in memory, to ``pacs_priors`` (the woman's
Patient ID, to ask the PACS for her earlier studies once a screen is filed): instances are
named by their order in the association ("instance 3"), studies by their order ("study 1"),
in the log and audit trail.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import EventHandlerType as EventHandler
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from .. import events
from ..choices import AssociationRefusal
from ..imaging.dicom import IMAGE_SOP_CLASSES
from ..imaging.films import FileRejected
from ..imaging.pictures import inspect_image
from ..imaging.streams import KINDS_BY_SYNTAX
from ..intake import actions as intake_actions
from ..ops.metrics import DICOM_ASSOCIATIONS, DICOM_INSTANCES, DICOM_REFUSALS, DICOM_STUDIES
from .pacs_priors import PriorFetcher, Wanted, fetcher_from_settings
from .spooled import SpooledInstance

log = logging.getLogger(__name__)

# Native syntaxes and every compressed one the upload checks can verify and decode.
TRANSFER_SYNTAXES = [ImplicitVRLittleEndian, "1.2.840.10008.1.2.1", *sorted(KINDS_BY_SYNTAX)]
# PS3.4 Annex B.2.3 C-STORE failures.
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
STATUS_BY_CODE = {
    "too_large": OUT_OF_RESOURCES,
    "too_many_pixels": OUT_OF_RESOURCES,
    "not_mammography": DOES_NOT_MATCH_SOP_CLASS,
    "no_pixel_data": DOES_NOT_MATCH_SOP_CLASS,
    "not_dicom": DOES_NOT_MATCH_SOP_CLASS,
    "too_many_files": OUT_OF_RESOURCES,
    "study_refused": PROCESSING_FAILURE,  # valid, but another instance sank its study
}
# A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised.
REJECT_UNKNOWN_CALLER = (0x01, 0x01, 0x03)
REJECT_CALLED = (0x01, 0x01, 0x07)  # called AE title not recognised
REJECT_BUSY = (0x02, 0x03, 0x02)  # rejected transient, by the provider: local limit exceeded


@dataclass(frozen=True)
class Peer:
    """A sender the node accepts: its calling AE title, from this host only."""

    ae_title: str
    host: str

    def addresses(self) -> set[str]:
        """The host's addresses now (a name is resolved at each association, so a PACS
        that moves keeps working)."""
        try:
            return {str(info[4][0]) for info in socket.getaddrinfo(self.host, None)}
        except OSError:
            return set()


def parse_peers(entries: list[str]) -> list[Peer]:
    """``["AETITLE@host", …]`` (DICOM_NODE_PEERS) as peers; a malformed entry stops the node."""
    peers = []
    for entry in entries:
        ae_title, at, host = entry.rpartition("@")
        ae_title, host = ae_title.strip(), host.strip()
        if not at or not ae_title or not host or len(ae_title) > 16:
            raise ImproperlyConfigured(
                f"DICOM_NODE_PEERS entry {entry!r} is not AETITLE@host (AE title of 1-16 characters)."
            )
        peers.append(Peer(ae_title, host))
    return peers


def caller_refusal(peers: list[Peer], calling_ae: str, address: str) -> str:
    """Why a caller is not let in ("" if it is): the AE title and the address must both be
    those of one configured peer."""
    titled = [peer for peer in peers if peer.ae_title == calling_ae.strip()]
    if not titled:
        return "unknown calling AE title"
    if not any(address in peer.addresses() for peer in titled):
        return "calling AE title not allowed from this address"
    return ""


@dataclass
class PendingStudy:
    """One study of an association: its instances by SOP Instance UID (a re-send in the
    same association replaces the earlier copy), or the first refusal that sank it."""

    order: int
    instances: dict[str, SpooledInstance] = field(default_factory=dict)
    refusal: tuple[str, str] | None = None  # (code, reason)
    # Whose earlier studies to fetch once it is filed: the original Patient ID, in memory
    # only (``pacs_priors``), from its first instance.
    wanted: Wanted | None = None


@dataclass
class Reception:
    """What one association has brought so far."""

    calling_ae: str
    address: str
    folder: tempfile.TemporaryDirectory = field(
        default_factory=lambda: tempfile.TemporaryDirectory(prefix="mammo-dicom-")
    )
    studies: dict[str, PendingStudy] = field(default_factory=dict)
    instances: int = 0


class DicomNode:
    """The application entity and its handlers; ``start`` serves in background threads."""

    def __init__(
        self,
        actor: User,
        ae_title: str,
        peers: list[Peer],
        quiet_seconds: float = 60.0,
        priors: PriorFetcher | None = None,
    ) -> None:
        self.actor, self.ae_title, self.peers = actor, ae_title, peers
        self.quiet_seconds = quiet_seconds
        self.priors = priors  # None: priors are not fetched (PRIORS_PACS unset)
        self._receptions: dict[int, Reception] = {}
        self._lock = threading.Lock()

    def application_entity(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(Verification)
        for sop_class in sorted(IMAGE_SOP_CLASSES):
            ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        ae.maximum_pdu_size = 0  # no limit: mammograms are large
        # The quiet period: a sender that holds its association open without sending is
        # cut off (A-ABORT, as Orthanc and storescp do), and what it sent is filed.
        ae.network_timeout = self.quiet_seconds
        # Past the limit the node rejects (A-ASSOCIATE-RJ, local limit exceeded), audited and
        # counted (``on_requested``): settings.DICOM_NODE_MAX_ASSOCIATIONS says why it is raised.
        ae.maximum_associations = settings.DICOM_NODE_MAX_ASSOCIATIONS
        return ae

    def handlers(self) -> list[EventHandler]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_ESTABLISHED, self.on_established),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_RELEASED, self.on_released),
            (evt.EVT_ABORTED, self.on_aborted),
        ]

    def start(self, address: str, port: int) -> ThreadedAssociationServer:
        """Serve on ``address:port`` until the returned server's ``shutdown()``."""
        ae = self.application_entity()
        server = ae.start_server((address, port), block=False, evt_handlers=self.handlers())
        assert server is not None  # not blocking: the server is returned
        log.info("DICOM node %s listening on %s:%d", self.ae_title, address, port)
        return server

    def on_requested(self, event: evt.Event) -> None:
        """Let in configured peers calling this node's AE title while an association is free;
        reject the rest, audited and counted (before pynetdicom's own limit check, which
        would reject a busy caller unseen)."""
        assoc = event.assoc
        calling_ae, address = _caller(assoc)
        refusal = self._refusal(assoc, calling_ae, address)
        if refusal is None:
            return
        code, why, reason = refusal
        log.warning("DICOM association from %s at %s rejected: %s", calling_ae, address, why)
        DICOM_ASSOCIATIONS.labels("rejected").inc()
        DICOM_REFUSALS.labels(code).inc()
        try:
            events.dicom_association_rejected(calling_ae, address, why, code)
        finally:
            connections.close_all()  # this association's thread, not the server's
        assoc.acse.send_reject(*reason)
        assoc.kill()

    def _refusal(
        self, assoc: Association, calling_ae: str, address: str
    ) -> tuple[AssociationRefusal, str, tuple[int, int, int]] | None:
        """(code, why, A-ASSOCIATE-RJ reason) of a refused association, None if let in."""
        called_ae = str(cast(A_ASSOCIATE, assoc.requestor.primitive).called_ae_title).strip()
        not_allowed = caller_refusal(self.peers, calling_ae, address)
        if not_allowed:
            return AssociationRefusal.NOT_ALLOWED, not_allowed, REJECT_UNKNOWN_CALLER
        if called_ae != self.ae_title:
            why = f"called AE title {called_ae!r} is not this node's"
            return AssociationRefusal.CALLED_AE, why, REJECT_CALLED
        # pynetdicom's own count (this association included), asked before it does.
        serving = [a for a in assoc.ae.active_associations if a.is_acceptor]
        if len(serving) > assoc.ae.maximum_associations:
            why = f"busy: {assoc.ae.maximum_associations} associations already (try again later)"
            return AssociationRefusal.BUSY, why, REJECT_BUSY
        return None

    def on_established(self, event: evt.Event) -> None:
        DICOM_ASSOCIATIONS.labels("accepted").inc()
        with self._lock:
            self._receptions[id(event.assoc)] = Reception(*_caller(event.assoc))

    def on_store(self, event: evt.Event) -> Dataset | int:
        reception = self._receptions.get(id(event.assoc))
        if reception is None:
            return PROCESSING_FAILURE
        position = reception.instances
        reception.instances += 1
        content = event.encoded_dataset()
        wanted = None
        try:
            study_uid = str(event.dataset.get("StudyInstanceUID", "") or "")
            wanted = Wanted.of(event.dataset)
        except Exception:  # a dataset pydicom cannot even parse: refused as corrupt below
            study_uid = ""
        request = cast(C_STORE, event.request)
        sop_uid = str(request.AffectedSOPInstanceUID or "")
        pending = reception.studies.setdefault(
            study_uid, PendingStudy(len(reception.studies), wanted=wanted)
        )
        if pending.refusal is not None:
            return self._refuse(
                reception, position, "study_refused", "Another instance of this study was refused."
            )
        instance = SpooledInstance(Path(reception.folder.name) / f"{position}.dcm", position)
        try:
            if not study_uid:
                raise FileRejected("corrupt", "The instance names no Study Instance UID.")
            if sop_uid not in pending.instances and len(pending.instances) >= (
                settings.UPLOAD_MAX_FILES
            ):
                # Refused now, while the sender can be told: the upload verb would refuse it.
                raise FileRejected(
                    "too_many_files",
                    f"More than {settings.UPLOAD_MAX_FILES} instances in one study.",
                )
            inspect_image(instance.name, len(content), lambda: content)
            instance.path.write_bytes(content)
        except FileRejected as rejection:
            code, reason = rejection.code, rejection.message
        except Exception as error:  # a check or a write that broke: the study is refused whole
            # The type only: a parser's message can quote a header value.
            log.error("DICOM instance %d not kept (%s)", position + 1, type(error).__name__)
            code, reason = "not_kept", "The instance could not be checked or kept here."
        else:
            pending.instances[sop_uid] = instance
            DICOM_INSTANCES.labels("received").inc()
            return 0x0000
        pending.refusal = (code, reason)
        pending.instances.clear()
        return self._refuse(reception, position, code, reason)

    def _refuse(self, reception: Reception, position: int, code: str, reason: str) -> Dataset:
        DICOM_INSTANCES.labels("refused").inc()
        log.warning(
            "DICOM instance %d from %s refused (%s): %s",
            position + 1,
            reception.calling_ae,
            code,
            reason,
        )
        try:
            events.dicom_refused(
                reception.calling_ae, reception.address, "instance", position, code, reason
            )
        finally:
            connections.close_all()
        status = Dataset()
        status.Status = STATUS_BY_CODE.get(code, CANNOT_UNDERSTAND)
        status.ErrorComment = f"instance {position + 1}: {reason}"[:64]
        return status

    def on_released(self, event: evt.Event) -> None:
        self._end(event.assoc, "released")

    def on_aborted(self, event: evt.Event) -> None:
        """An abort (the sender's, or ours after the quiet period) files what was received
        too: an instance answered with success is the node's to keep, and the sender may
        already have deleted its copy (PS3.4 B.2.3)."""
        self._end(event.assoc, "aborted")

    def _end(self, assoc: Association, how: str) -> None:
        reception = self._pop(assoc)
        if reception is None:
            return
        try:
            filed = [self._file(reception, pending) for pending in reception.studies.values()]
            log.info(
                "DICOM association from %s %s: %d instances, %d studies stored, %d refused",
                reception.calling_ae,
                how,
                reception.instances,
                filed.count(True),
                filed.count(False),
            )
            events.dicom_association_ended(
                reception.calling_ae,
                reception.address,
                how,
                reception.instances,
                filed.count(True),
                filed.count(False),
            )
        finally:
            reception.folder.cleanup()
            connections.close_all()

    def _pop(self, assoc: Association) -> Reception | None:
        with self._lock:
            return self._receptions.pop(id(assoc), None)

    def _file(self, reception: Reception, pending: PendingStudy) -> bool:
        """File one study through the upload verb; True if it is stored (now or before)."""
        label = f"study {pending.order + 1}"
        if pending.refusal is not None:
            code, reason = pending.refusal
            return self._study_refused(
                reception, pending, code, f"An instance was refused: {reason}"
            )
        files = sorted(pending.instances.values(), key=lambda instance: instance.position)
        spec = intake_actions.StudySpec(accession_number="", dicom_only=True, resend_is_stored=True)
        try:
            accepted = intake_actions.upload_study(self.actor, spec, files)
        except intake_actions.UploadRefused as refusal:
            return self._study_refused(reception, pending, "study", refusal.message)
        except Exception as error:  # the database or the storage failed, not the study
            return self._keep_unfiled(reception, pending, files, error)
        outcome = "stored" if accepted.studies else "already_stored"
        DICOM_STUDIES.labels(outcome).inc()
        log.info(
            "DICOM %s from %s (%d instances): %s as study %s",
            label,
            reception.calling_ae,
            len(files),
            outcome.replace("_", " "),
            accepted.study.pk,
        )
        if self.priors is not None and pending.wanted is not None and accepted.studies:
            if not accepted.study.is_prior:  # a screen just filed: hang her history beside it
                self.priors.submit(accepted.study.pk, pending.wanted)
        return True

    def _keep_unfiled(
        self,
        reception: Reception,
        pending: PendingStudy,
        files: list[SpooledInstance],
        error: Exception,
    ) -> bool:
        """The sender was told these instances are stored: when filing fails for a reason
        of ours (database down, storage full) they are kept as received, one folder per
        study under var/dicom-unfiled/, for ``import_studies`` once the fault is fixed."""
        folder = Path(settings.VAR_DIR) / "dicom-unfiled" / uuid.uuid4().hex
        folder.mkdir(mode=0o700, parents=True)
        for instance in files:
            shutil.move(instance.path, folder / f"{instance.position + 1:04d}.dcm")
        DICOM_STUDIES.labels("unfiled").inc()
        log.error(
            "DICOM study %d from %s not filed (%s): its %d instances are kept in %s",
            pending.order + 1,
            reception.calling_ae,
            type(error).__name__,
            len(files),
            folder,
        )
        try:
            events.dicom_refused(
                reception.calling_ae,
                reception.address,
                "study",
                pending.order,
                "unfiled",
                f"Not filed ({type(error).__name__}); kept in {folder} for import_studies.",
            )
        except Exception:
            log.exception("Could not audit the unfiled study (the database is down?)")
        return False

    def _study_refused(
        self, reception: Reception, pending: PendingStudy, code: str, reason: str
    ) -> bool:
        DICOM_STUDIES.labels("refused").inc()
        log.warning(
            "DICOM study %d from %s refused, nothing stored: %s",
            pending.order + 1,
            reception.calling_ae,
            reason,
        )
        events.dicom_refused(
            reception.calling_ae, reception.address, "study", pending.order, code, reason
        )
        return False


def _caller(assoc: Association) -> tuple[str, str]:
    primitive = cast(A_ASSOCIATE, assoc.requestor.primitive)
    calling_ae = str(primitive.calling_ae_title or "").strip()
    return calling_ae, assoc.requestor.address


def node_from_settings(actor: User) -> DicomNode:
    """The node as configured. With no peers it still runs and rejects every caller (each
    rejection logged with the address it saw), so a site adds its PACS from the log."""
    peers = parse_peers(settings.DICOM_NODE_PEERS)
    if not peers:
        log.warning("DICOM_NODE_PEERS is empty: every association will be rejected")
    ae_title = settings.DICOM_NODE_AE_TITLE
    return DicomNode(
        actor,
        ae_title,
        peers,
        settings.DICOM_NODE_QUIET_SECONDS,
        fetcher_from_settings(actor, ae_title),
    )
