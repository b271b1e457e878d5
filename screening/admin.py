"""Django admin for admins: users and model versions; clinical records are read-only here."""

from django.contrib import admin, messages

from . import actions
from .models import (
    AIResult,
    AuditEvent,
    Case,
    Finding,
    Image,
    ModelVersion,
    Patient,
    Read,
    Study,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "outcome", "object_type", "object_id"]
    list_filter = ["action", "outcome"]
    search_fields = ["actor_name", "object_id"]

    def get_actions(self, request):  # type: ignore[no-untyped-def]
        return {}


@admin.register(Read)
class ReadAdmin(ReadOnlyAdmin):
    list_display = [
        "case",
        "kind",
        "reader",
        "decision",
        "birads",
        "birads_right",
        "birads_left",
        "density",
        "agrees_with_ai",
        "created_at",
    ]


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = ["pk", "patient", "status", "ai_score", "received_at", "is_synthetic"]
    list_filter = ["status", "is_synthetic"]


@admin.register(Patient, Study, Image, AIResult, Finding)
class ClinicalRecordAdmin(ReadOnlyAdmin):
    pass


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
    def activate(self, request, queryset):  # type: ignore[no-untyped-def]
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one model version.", messages.ERROR)
            return
        version = actions.activate_model_version(request.user, queryset.get().pk)
        self.message_user(request, f"{version} is now active.")
