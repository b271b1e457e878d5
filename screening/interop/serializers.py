"""The interop endpoints' serializers: a closed case's PACS deliveries."""

from __future__ import annotations

from rest_framework import serializers

from ..choices import (
    DeliveredObject,
    DeliveryStatus,
)
from ..models import (
    PacsDelivery,
)


class PacsDeliverySerializer(serializers.ModelSerializer):
    """One object of a closed case on its way to one PACS destination."""

    object = serializers.ChoiceField(source="kind", choices=DeliveredObject.choices)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)

    class Meta:
        model = PacsDelivery
        fields = [
            "object",
            "destination",
            "status",
            "attempts",
            "last_error",
            "sop_instance_uid",
            "next_attempt_at",
            "acknowledged_at",
        ]


class CaseSendStatusSerializer(serializers.Serializer):
    """A case's send status: its deliveries, or why it has none (``note``)."""

    case = serializers.IntegerField()
    note = serializers.CharField()
    deliveries = PacsDeliverySerializer(many=True)
