"""The reading pages' forms: the read (BI-RADS, density, findings and their marks), the
worklist filter, the signed stamp of when a case was opened, and the site's reading policy."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.signing import BadSignature, Signer
from django.forms.renderers import DjangoTemplates
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

from ..choices import (
    AIReveal,
    BiRads,
    Breast,
    CaseStatus,
    Decision,
    Density,
    FindingDepth,
    FindingSite,
    FindingType,
    ReadingPolicy,
    ReadKind,
    RiskBand,
)
from .assessment import FindingInput, Mark


def _choose(choices: list[tuple], prompt: str = "— choose —") -> list[tuple]:
    """Choices with an empty first entry: nothing is preselected for the reader."""
    return [("", prompt), *choices]


# Finding rows the case page offers per breast (the API takes any number).
FINDINGS_PER_BREAST = 4


def finding_row(breast: str, n: int) -> str:
    """A finding row's field suffix: "R" for the right breast's first, "R_2" for its second."""
    return breast if n == 1 else f"{breast}_{n}"


def mark_from_json(text: str) -> Mark:
    """A mark as the page's hidden field carries it; ValueError where it is not one."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    image, shape, points = value.get("image"), value.get("shape"), value.get("points")
    if not isinstance(image, int) or isinstance(image, bool) or not isinstance(shape, str):
        raise ValueError("image or shape")
    if not isinstance(points, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(_number(v) for v in p) for p in points
    ):
        raise ValueError("points")
    return Mark(image, shape, tuple((float(x), float(y)) for x, y in points))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class QuickSelects(DjangoTemplates):
    """Renders a select and its options in Python, byte for byte what Django's templates
    (``django/forms/widgets/select.html``, ``select_option.html``, ``attrs.html``) give,
    and everything else through them. The read form holds a dozen selects and a few hundred
    options; through the templates they were most of the case page's 49 ms of server time
    (issue 28: the case page under load). A test holds both renderings equal."""

    def render(self, template_name: str, context: dict[str, Any], request: Any = None) -> str:
        if template_name == "django/forms/widgets/select.html":
            return _select_html(context["widget"])
        return super().render(template_name, context, request)


QUICK_SELECTS = QuickSelects()


def _text(value: Any) -> str:
    """``{{ value|stringformat:'s' }}`` under autoescape: the value as text, escaped."""
    return conditional_escape(f"{value}")


def _attrs_html(attrs: Mapping[str, Any]) -> str:
    """``attrs.html``: a false attribute left out, a true one named alone."""
    return "".join(
        ""
        if value is False
        else f" {_text(name)}"
        if value is True
        else f' {_text(name)}="{_text(value)}"'
        for name, value in attrs.items()
    )


def _select_html(widget: Mapping[str, Any]) -> str:
    parts = [f'<select name="{_text(widget["name"])}"{_attrs_html(widget["attrs"])}>']
    for group_name, options, _ in widget["optgroups"]:
        if group_name:
            parts.append(f'\n  <optgroup label="{_text(group_name)}">')
        for option in options:
            if option["template_name"] != "django/forms/widgets/select_option.html":
                raise ValueError(f"QuickSelects cannot write {option['template_name']}")
            value, attrs = _text(option["value"]), _attrs_html(option["attrs"])
            label = conditional_escape(option["label"])
            parts.append(f'\n  <option value="{value}"{attrs}>{label}</option>\n')
        if group_name:
            parts.append("\n  </optgroup>")
    parts.append("\n</select>")
    return mark_safe("".join(parts))  # noqa: S308 (every value above is escaped)


class ReadForm(forms.Form):
    """A structured read: BI-RADS per breast, density, findings of recalled breasts.

    Nothing is preselected: a category, a density or a finding is only ever what the
    reader chose. The decision comes from the button pressed and must match what the
    categories mean (the reading action refuses it otherwise).
    """

    # One renderer for every read form: a class here would be built per form, and with it a
    # template engine whose cache starts empty on every request.
    default_renderer = QUICK_SELECTS
    kind = forms.ChoiceField(choices=ReadKind.choices, widget=forms.HiddenInput)
    birads_right = forms.TypedChoiceField(
        choices=_choose(BiRads.choices, "— BI-RADS right —"),
        coerce=int,
        label="Right breast BI-RADS",
    )
    birads_left = forms.TypedChoiceField(
        choices=_choose(BiRads.choices, "— BI-RADS left —"),
        coerce=int,
        label="Left breast BI-RADS",
    )
    density = forms.ChoiceField(
        choices=Density.choices, widget=forms.RadioSelect, label="Breast density (ACR)"
    )
    decision = forms.ChoiceField(choices=Decision.choices, required=False)
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Reason or note (to override the AI)"}
        ),
    )
    opened = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for breast in Breast:
            for n in range(1, FINDINGS_PER_BREAST + 1):
                self._add_finding_row(breast, n)

    def _add_finding_row(self, breast: Breast, n: int) -> None:
        side = breast.label.lower()
        what = "Finding" if n == 1 else f"Finding {n}"
        row = finding_row(breast, n)
        self.fields[f"finding_{row}"] = forms.ChoiceField(
            choices=_choose(FindingType.choices, "— no finding —"),
            required=False,
            label=f"{what}, {side}",
        )
        self.fields[f"site_{row}"] = forms.ChoiceField(
            choices=_choose(FindingSite.choices, "— site —"), required=False, label=f"Site, {side}"
        )
        self.fields[f"depth_{row}"] = forms.ChoiceField(
            choices=_choose(FindingDepth.choices, "— depth —"),
            required=False,
            label=f"Depth, {side}",
        )
        # Where the reader marked it on a film (static/js/findings.js fills it from the
        # viewer's mark): {"image": id, "shape": ..., "points": [[x, y], ...]} as JSON.
        self.fields[f"mark_{row}"] = forms.CharField(
            required=False,
            max_length=2000,
            label=f"Mark of {what.lower()}, {side}",
            widget=forms.HiddenInput(attrs={"data-mark": row}),
        )

    def breast_fields(self) -> list[tuple[str, forms.BoundField, list[dict[str, Any]]]]:
        """Per breast, right first (as the films hang): the category, then its finding rows
        (finding, site, depth, and the mark); a row past the first shows once it holds
        something, or when the reader adds a finding or marks one."""
        return [
            (
                breast.label,
                self[f"birads_{breast.label.lower()}"],
                [self._row_of(breast, n) for n in range(1, FINDINGS_PER_BREAST + 1)],
            )
            for breast in Breast
        ]

    def _row_of(self, breast: Breast, n: int) -> dict[str, Any]:
        row = finding_row(breast, n)
        fields = [self[f"{name}_{row}"] for name in ("finding", "site", "depth")]
        mark = self[f"mark_{row}"]
        held = any(field.value() for field in [*fields, mark])
        return {"row": row, "n": n, "fields": fields, "mark": mark, "shown": n == 1 or held}

    def findings(self) -> tuple[FindingInput, ...]:
        data = self.cleaned_data
        return tuple(
            FindingInput(
                breast=breast,
                finding=data[f"finding_{row}"],
                site=data[f"site_{row}"],
                depth=data[f"depth_{row}"],
                mark=data[f"mark_{row}"],
            )
            for breast in Breast
            for row in (finding_row(breast, n) for n in range(1, FINDINGS_PER_BREAST + 1))
            if data.get(f"finding_{row}")
        )

    # What a draft keeps: what the reader chose or typed, not the stamp, kind or button.
    NOT_DRAFTED = ("kind", "opened", "decision")

    def draft(self, data: Mapping[str, Any]) -> dict[str, str]:
        """The fields of a read in progress, each empty or a value this form takes (a partial
        read is a draft, not an error); ValidationError on a value no field takes."""
        kept = {}
        for name, field in self.fields.items():
            value = data.get(name, "")
            if name in self.NOT_DRAFTED or not value:
                continue
            if not isinstance(value, str) or (
                isinstance(field, forms.ChoiceField) and not field.valid_value(value)
            ):
                raise forms.ValidationError(f"{field.label or name}: not a value this read takes.")
            if len(value) > 2000 or "\x00" in value:  # PostgreSQL text holds no NUL
                raise forms.ValidationError(f"{field.label or name}: too long or not text.")
            kept[name] = value
        return kept

    def clean(self):
        super().clean()
        data = self.cleaned_data
        for breast in Breast:
            side = breast.label.lower()
            for n in range(1, FINDINGS_PER_BREAST + 1):
                row = finding_row(breast, n)
                self._clean_mark(row, side)
                if data.get(f"finding_{row}") and not data.get(f"site_{row}"):
                    self.add_error(f"site_{row}", f"Give the site of the {side} finding.")
        return data

    def _clean_mark(self, row: str, side: str) -> None:
        """The mark's JSON as a ``Mark`` (None where there is none); whether it lies on one of
        the case's films is the reading verb's check (``assessment.check_mark``)."""
        data = self.cleaned_data
        text = data.get(f"mark_{row}") or ""
        data[f"mark_{row}"] = None
        if not text:
            return
        try:
            mark = mark_from_json(text)
        except ValueError:
            self.add_error(f"mark_{row}", "This mark could not be read: mark the finding again.")
            return
        if not data.get(f"finding_{row}"):
            self.add_error(f"finding_{row}", f"Say what the mark on the {side} film shows.")
        data[f"mark_{row}"] = mark


class WorklistFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *CaseStatus.choices], required=False)
    band = forms.ChoiceField(choices=[("", "Any risk"), *RiskBand.choices], required=False)


_opened_signer = Signer(salt="screening.read-opened")


def sign_opened(case_id: int, reader_id: int) -> str:
    """A tamper-proof 'case opened at, by' stamp: time-to-read is measured by the server, and
    a read sent after sign-out is given back only to the reader whose page sent it."""
    return _opened_signer.sign_object({"case": case_id, "at": time.time(), "by": reader_id})


def _opened(stamp: str, case_id: int) -> dict | None:
    try:
        value = _opened_signer.unsign_object(stamp)
    except (BadSignature, ValueError):
        return None
    return value if isinstance(value, dict) and value.get("case") == case_id else None


def seconds_since_opened(stamp: str, case_id: int) -> int | None:
    value = _opened(stamp, case_id)
    if value is None:
        return None
    return max(0, int(time.time() - float(value["at"])))


def opened_by(stamp: str, case_id: int) -> int | None:
    """The reader whose case page sent this stamp (None: no stamp, or not this case's)."""
    value = _opened(stamp, case_id)
    reader = value.get("by") if value else None
    return reader if isinstance(reader, int) else None


class PolicyForm(forms.Form):
    """A new version of the site's reading policy (``reading.actions.set_policy``)."""

    policy = forms.ChoiceField(choices=ReadingPolicy.choices, label="Reading policy")
    single_read_normal = forms.BooleanField(
        required=False, label="Normal triage: single-read exams tagged AI: normal"
    )
    ai_reveal = forms.ChoiceField(
        choices=AIReveal.choices, initial=AIReveal.CONCURRENT, label="Show the AI"
    )
    starts_at = forms.DateTimeField(
        required=False,
        label="Starts at (empty: now)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
