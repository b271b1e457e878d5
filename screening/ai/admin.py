"""Django admin for model versions: what they are stays read-only; activation is the AI
capability's audited verb (``actions.activate_model_version``)."""

from django.contrib import admin, messages

from ..models import ModelVersion
from . import actions as ai_actions


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["architecture", "version", "threshold", "is_active", "created_at"]
    # What a version is and how its scores are banded never change once registered: stored
    # results and the cases' risk bands were computed with them.
    readonly_fields = [
        "architecture",
        "version",
        "artifact_path",
        "checksum",
        "input_size",
        "threshold",
        "is_active",
        "activated_at",
    ]
    actions = ["activate"]

    @admin.action(description="Activate for triage")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one model version.", messages.ERROR)
            return
        version = ai_actions.activate_model_version(request.user, queryset.get().pk)
        self.message_user(request, f"{version} is now active.")
