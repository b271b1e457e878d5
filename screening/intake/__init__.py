"""Intake: upload checks, DICOM ingest and de-identification, and the upload verb.

A film comes in through the upload page, the API or STOW-RS; ``imaging`` and ``dicom``
check and decode it, ``dicom.deidentify`` strips what identifies the woman (research mode;
``dicom.keep_identity`` keeps it in clinical mode), and
``actions.upload_study`` files it as a study and case and queues its AI work.
"""
