"""Intake: the upload verb that files a study and queues its AI work.

A film comes in through the upload page, the API or STOW-RS; ``screening.imaging`` checks
and decodes it (``dicom.deidentify`` strips what identifies the woman in research mode,
``dicom.keep_identity`` keeps it in clinical mode), and ``actions.upload_study`` files it
as a study and case and queues its AI work.
"""
