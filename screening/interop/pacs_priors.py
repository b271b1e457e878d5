"""Priors from the PACS: when a screen arrives, the woman's earlier mammograms are fetched as
history to hang beside it.

The PACS is asked (C-FIND, study level, Study Root) for her MG studies by the Patient ID and
issuer the arriving files carried; the newest ``PRIORS_COUNT`` dated before the arriving
study and not stored here already are retrieved (C-GET: the PACS sends them back by C-STORE
on the same association) and filed through the upload verb, with its checks, as prior
studies: no case, no reading task, never scored by the AI. In research mode they are
de-identified with the same keyed pseudonym as the screen, so they attach to the same woman.

The original Patient ID lives only in memory (``Wanted``), from the node's reception to the
end of the look-up: it is never stored, logged, audited or sent through a queue. Done in a
thread of the node's own after the screen is filed, so arrival is never slowed; a failure is
logged and audited and leaves the screen as it is.
"""

from __future__ import annotations

import logging
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from .. import events
from ..choices import IdentityMode
from ..imaging.dicom import IMAGE_SOP_CLASSES, remap_uid
from ..imaging.streams import KINDS_BY_SYNTAX
from ..intake import actions as intake_actions
from ..models import Study
from .spooled import SpooledInstance

log = logging.getLogger(__name__)

# What the upload checks decode, as the node accepts: the PACS picks one per SOP class.
RETRIEVED_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, *sorted(KINDS_BY_SYNTAX)]
PENDING = (0xFF00, 0xFF01)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA702  # PS3.4 C.4.3: refused sub-operation (too many instances)


class PriorsFailed(Exception):
    """The PACS could not be asked or did not answer as it should: said without identifiers."""


@dataclass(frozen=True)
class Pacs:
    """The archive asked for priors: ``AETITLE@host:port`` (PRIORS_PACS)."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_pacs(entry: str) -> Pacs | None:
    """PRIORS_PACS as a PACS, None when empty (priors off); a malformed entry stops the node."""
    if not entry.strip():
        return None
    ae_title, at, address = entry.strip().rpartition("@")
    host, colon, port = address.rpartition(":")
    if not at or not ae_title or len(ae_title) > 16 or not colon or not host or not port.isdigit():
        raise ImproperlyConfigured(
            f"PRIORS_PACS {entry!r} is not AETITLE@host:port (AE title of 1-16 characters)."
        )
    return Pacs(ae_title, host, int(port))


@dataclass(frozen=True)
class Wanted:
    """Whose priors to fetch, as the arriving files named her: held in memory only."""

    patient_id: str
    issuer: str
    study_uid: str  # the arriving study's original UID, never a prior of itself
    study_date: str  # YYYYMMDD or ""

    @classmethod
    def of(cls, ds: Dataset) -> Wanted:
        return cls(
            patient_id=str(ds.get("PatientID") or "").strip(),
            issuer=str(ds.get("IssuerOfPatientID") or "").strip(),
            study_uid=str(ds.get("StudyInstanceUID") or "").strip(),
            study_date=str(ds.get("StudyDate") or "").strip(),
        )


@dataclass(frozen=True)
class Found:
    """A study of hers the PACS holds (original UID: used on the association only)."""

    study_uid: str
    study_date: str


class RetrievedInstance(SpooledInstance):
    """An instance the PACS sent back by C-GET, kept on disk until its study is filed."""

    label = "retrieved instance"


@dataclass
class Retrieval:
    """The instances one C-GET brought, in a folder of their own."""

    folder: Path
    instances: list[RetrievedInstance] = field(default_factory=list)

    def on_store(self, event: evt.Event) -> int:
        if len(self.instances) >= settings.UPLOAD_MAX_FILES:
            return OUT_OF_RESOURCES  # the upload verb would refuse the study whole
        instance = RetrievedInstance(
            self.folder / f"{len(self.instances)}.dcm", len(self.instances)
        )
        instance.path.write_bytes(event.encoded_dataset())
        self.instances.append(instance)
        return SUCCESS


def stored_uid(original: str) -> str:
    """The UID a study of this site is stored under: remapped (research), else as sent."""
    return original if settings.IDENTITY_MODE == IdentityMode.CLINICAL else remap_uid(original)


def earlier(found: list[Found], wanted: Wanted, count: int) -> list[Found]:
    """The newest ``count`` of her studies dated before the arriving one (all of them when
    its date is unknown), the arriving study itself left out."""
    older = [
        study
        for study in found
        if study.study_uid != wanted.study_uid
        and (not wanted.study_date or (study.study_date and study.study_date < wanted.study_date))
    ]
    return sorted(older, key=lambda study: study.study_date, reverse=True)[:count]


class PriorFetcher:
    """Fetches priors in one background thread of the node, one arriving screen at a time."""

    def __init__(
        self, actor: User, pacs: Pacs, calling_ae: str, count: int, timeout: float = 60.0
    ) -> None:
        self.actor, self.pacs, self.calling_ae = actor, pacs, calling_ae
        self.count, self.timeout = count, timeout
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="priors")

    def submit(self, study_id: int, wanted: Wanted) -> Future[list[int]] | None:
        """Queue the look-up for a screen just filed; None where she cannot be looked up
        (no Patient ID: a study's pseudonym is then its own, she has no earlier study)."""
        if not wanted.patient_id or self.count <= 0:
            return None
        return self._pool.submit(self.fetch, study_id, wanted)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    def fetch(self, study_id: int, wanted: Wanted) -> list[int]:
        """Ask, retrieve, file; the pks of the prior studies stored. Never raises: a failure
        is logged and audited, and the screen stays as it is."""
        study = Study.objects.filter(pk=study_id).first()
        try:
            if study is None:
                return []
            found, stored, failures = self._fetch(wanted)
            events.priors_fetched(study, str(self.pacs), found, stored, "; ".join(failures))
            log.info(
                "Priors for study %s from %s: %d earlier studies held, %d stored here%s",
                study.pk,
                self.pacs,
                found,
                len(stored),
                f", failed: {'; '.join(failures)}" if failures else "",
            )
            return stored
        except Exception as error:  # the PACS, the network or the database: never the screen
            reason = str(error) if isinstance(error, PriorsFailed) else type(error).__name__
            log.error("Priors for study %s from %s failed: %s", study_id, self.pacs, reason)
            try:
                if study is not None:
                    events.priors_fetched(study, str(self.pacs), 0, [], reason)
            except Exception:
                log.exception("Could not audit the failed look-up of priors")
            return []
        finally:
            connections.close_all()  # this thread's connections only

    def _fetch(self, wanted: Wanted) -> tuple[int, list[int], list[str]]:
        with _Associated(self) as (assoc, retrieval):
            found = self._find(assoc, wanted)
            chosen = earlier(found, wanted, self.count)
            stored: list[int] = []
            failures: list[str] = []
            for position, prior in enumerate(chosen):
                if Study.objects.filter(study_instance_uid=stored_uid(prior.study_uid)).exists():
                    continue  # read here as a screen before, or fetched before
                retrieval.instances.clear()
                failure = self._get(assoc, prior)
                pk = self._file(retrieval) if not failure else None
                if pk is None:
                    failures.append(f"prior {position + 1}: {failure or 'refused on upload'}")
                else:
                    stored.append(pk)
            return len(found), stored, failures

    def _find(self, assoc: Association, wanted: Wanted) -> list[Found]:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = wanted.patient_id
        # Asked for, not matched on: not every PACS indexes the issuer at study level.
        query.IssuerOfPatientID = ""
        query.ModalitiesInStudy = "MG"
        query.StudyInstanceUID = ""
        query.StudyDate = ""
        found = []
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            code = int(status.Status) if status else -1
            if code in PENDING and identifier is not None:
                # Another issuer's patient with the same ID is not her.
                issuer = str(identifier.get("IssuerOfPatientID") or "").strip()
                if wanted.issuer and issuer and issuer != wanted.issuer:
                    continue
                uid = str(identifier.get("StudyInstanceUID") or "").strip()
                if uid:
                    found.append(Found(uid, str(identifier.get("StudyDate") or "").strip()))
            elif code != SUCCESS:
                raise PriorsFailed(f"C-FIND answered status 0x{code & 0xFFFF:04X}")
        return found

    def _get(self, assoc: Association, prior: Found) -> str:
        """Retrieve one study; "" when every instance came, else why not."""
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = prior.study_uid
        last = -1
        for status, _identifier in assoc.send_c_get(
            query, StudyRootQueryRetrieveInformationModelGet
        ):
            last = int(status.Status) if status else -1
        if last != SUCCESS:
            return f"C-GET answered status 0x{last & 0xFFFF:04X}"
        return ""

    def _file(self, retrieval: Retrieval) -> int | None:
        spec = intake_actions.StudySpec(
            accession_number="", dicom_only=True, resend_is_stored=True, prior=True
        )
        try:
            accepted = intake_actions.upload_study(self.actor, spec, retrieval.instances)
        except intake_actions.UploadRefused as refusal:
            log.warning("A prior from %s was refused: %s", self.pacs, refusal.message)
            return None
        finally:
            for instance in retrieval.instances:
                instance.path.unlink(missing_ok=True)
        return accepted.study.pk


class _Associated:
    """One association with the PACS for a whole look-up: C-FIND, then a C-GET per prior
    whose instances come back as C-STORE sub-operations (this side in the SCP role)."""

    def __init__(self, fetcher: PriorFetcher) -> None:
        self.fetcher = fetcher
        self.folder = tempfile.TemporaryDirectory(prefix="mammo-priors-")
        self.retrieval = Retrieval(Path(self.folder.name))
        self.assoc: Association | None = None

    def __enter__(self) -> tuple[Association, Retrieval]:
        fetcher = self.fetcher
        ae = AE(ae_title=fetcher.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = fetcher.timeout
        ae.maximum_pdu_size = 0
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for sop_class in sorted(IMAGE_SOP_CLASSES):
            ae.add_requested_context(sop_class, RETRIEVED_SYNTAXES)
        roles = [build_role(sop_class, scp_role=True) for sop_class in sorted(IMAGE_SOP_CLASSES)]
        assoc = ae.associate(
            fetcher.pacs.host,
            fetcher.pacs.port,
            ae_title=fetcher.pacs.ae_title,
            ext_neg=roles,  # type: ignore[arg-type]
            evt_handlers=[(evt.EVT_C_STORE, self.retrieval.on_store)],
        )
        if not assoc.is_established:
            self.folder.cleanup()
            raise PriorsFailed(f"the PACS {fetcher.pacs} did not accept the association")
        self.assoc = assoc
        return assoc, self.retrieval

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.assoc is not None and self.assoc.is_established:
                self.assoc.release()
        finally:
            self.folder.cleanup()


def fetcher_from_settings(actor: User, calling_ae: str) -> PriorFetcher | None:
    """The fetcher as configured (PRIORS_PACS), or None when priors are off."""
    pacs = parse_pacs(settings.PRIORS_PACS)
    if pacs is None:
        return None
    return PriorFetcher(
        actor, pacs, calling_ae, settings.PRIORS_COUNT, settings.PRIORS_TIMEOUT_SECONDS
    )
