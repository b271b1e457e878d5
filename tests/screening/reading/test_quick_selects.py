"""The read form's selects written in Python are what Django's templates write."""

from __future__ import annotations

from django import forms
from django.forms.renderers import BaseRenderer, DjangoTemplates

from screening.reading.forms import QuickSelects, ReadForm


class Both(forms.Form):
    plain = forms.ChoiceField(choices=[("a", "A & <b>"), ("", "— none —")], required=False)
    grouped = forms.ChoiceField(
        choices=[("Group <1>", [("x", 'x "quoted"'), ("y", "y")]), ("z", "z")],
        widget=forms.Select(attrs={"data-k": 'q"', "disabled": True, "hidden": False}),
    )
    numbers = forms.TypedChoiceField(choices=[(1, "one"), (2, "two")], coerce=int)


def rendered(form_class: type[forms.Form], renderer: BaseRenderer, data: dict | None) -> str:
    form = form_class(data, renderer=renderer)
    return "".join(str(form[name]) for name in form.fields)


def test_quick_selects_write_what_the_templates_write() -> None:
    for data in (None, {"plain": "a", "grouped": "y", "numbers": "2"}, {"plain": "<bad>"}):
        assert rendered(Both, QuickSelects(), data) == rendered(Both, DjangoTemplates(), data)


def test_the_read_form_renders_the_same_either_way() -> None:
    data = {"birads_right": "4", "finding_r0": "mass", "site_r0": "uoq", "density": "b"}
    quick = "".join(str(bound) for bound in ReadForm(data))
    slow = "".join(str(bound) for bound in ReadForm(data, renderer=DjangoTemplates()))
    assert quick == slow
    assert quick.count("<option") > 50  # the selects were there to compare
