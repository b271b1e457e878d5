"""The audit endpoints' serializers: a screening outcome as recorded."""

from __future__ import annotations

from rest_framework import serializers

from ..api.serializers import SOME_TEXT
from ..choices import (
    Outcome,
    OutcomeSource,
)


class OutcomeSerializer(serializers.Serializer):
    accession_number = serializers.RegexField(
        SOME_TEXT, max_length=64, trim_whitespace=False, help_text="The screen's accession number"
    )
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    # A declared field: the serializer's metaclass moves it out of Field.source, which it shadows.
    source = serializers.ChoiceField(choices=OutcomeSource.choices)  # type: ignore[assignment]
