"""Interop: DICOMweb (STOW-RS, QIDO-RS, WADO-RS) and the DICOM SR / SC exports to a PACS."""
