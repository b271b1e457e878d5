"""Film decoding, a floor below the capabilities: no capability's verbs, only the kernel.

What a film is, whatever way it came in: ``pictures`` checks a PNG or JPEG whole and renders
any film as the AI scores it; ``dicom`` checks, decodes and de-identifies DICOM, with
``streams`` walking each compressed pixel stream to its end first; ``films`` holds the
refusal every check raises; ``previews`` and ``lossless`` make the derived renditions the
viewer loads. Intake (storing a study) and ai (scoring it) both stand on this floor and
never on each other's modules (``docs/architecture.md``).
"""
