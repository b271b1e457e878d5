from __future__ import annotations

import time

from django import forms
from django.core.signing import BadSignature, Signer

from .choices import BiRads, CaseStatus, Decision, Modality, RiskBand


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault(
            "widget", MultipleFileInput(attrs={"accept": ".png,.jpg,.jpeg,.dcm,application/dicom"})
        )
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):  # type: ignore[no-untyped-def]
        # Files are checked one by one in the upload action, which reports each.
        if isinstance(data, list | tuple):
            return list(data)
        return [data] if data else []


class UploadForm(forms.Form):
    target = forms.ChoiceField(
        choices=[("new", "New study"), ("existing", "Add to an existing study")],
        initial="new",
        widget=forms.RadioSelect,
    )
    accession_number = forms.CharField(
        max_length=64,
        required=False,
        help_text="Required for PNG/JPEG; DICOM files bring their own (this is a fallback).",
    )
    patient_pseudonym = forms.CharField(
        max_length=64,
        required=False,
        help_text="Pseudonymous id only: never a name or hospital number. DICOM files get "
        "one derived from their header.",
    )
    birth_year = forms.IntegerField(min_value=1900, max_value=2100, required=False)
    study_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    modality = forms.ChoiceField(choices=Modality.choices, initial=Modality.MG)
    files = MultipleFileField(required=False)


class ReadForm(forms.Form):
    decision = forms.ChoiceField(choices=Decision.choices)
    birads = forms.TypedChoiceField(choices=BiRads.choices, coerce=int)
    reason = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3})
    )
    opened = forms.CharField(widget=forms.HiddenInput, required=False)
    expected_status = forms.ChoiceField(
        choices=CaseStatus.choices, widget=forms.HiddenInput, required=False
    )


class WorklistFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *CaseStatus.choices], required=False)
    band = forms.ChoiceField(choices=[("", "Any risk"), *RiskBand.choices], required=False)


_opened_signer = Signer(salt="screening.read-opened")


def sign_opened(case_id: int) -> str:
    """A tamper-proof 'case opened at' stamp, so time-to-read is measured by the server."""
    return _opened_signer.sign_object({"case": case_id, "at": time.time()})


def seconds_since_opened(stamp: str, case_id: int) -> int | None:
    try:
        value = _opened_signer.unsign_object(stamp)
    except (BadSignature, ValueError):
        return None
    if value.get("case") != case_id:
        return None
    return max(0, int(time.time() - float(value["at"])))
