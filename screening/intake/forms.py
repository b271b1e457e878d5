"""The upload page's form: several files at once, checked per file by ``screening.imaging``."""

from __future__ import annotations

from django import forms

from ..choices import (
    Modality,
)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "widget", MultipleFileInput(attrs={"accept": ".png,.jpg,.jpeg,.dcm,application/dicom"})
        )
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
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
    prior = forms.BooleanField(
        required=False,
        label="A prior study",
        help_text="Stored as history for comparison: no case, no reading task, not scored by the AI; shown beside the woman's later screens. A study dated before her newest screen is a prior even unticked.",
    )
    # A declared field: the form's metaclass moves it out of the class attribute it shadows.
    files = MultipleFileField(required=False)  # type: ignore[assignment]
