"""Django admin for admins: users here, model versions in ``ai.admin``; clinical records are
read-only here. Django finds only this module, so it imports each capability's admin: it
stands with the pages, above the capabilities, never in the kernel.

Accounts, API tokens and sign-in lockouts are the admin role's (``accounts.manages_accounts``),
whatever Django permissions a user holds; every change to them is audited.
"""

from typing import Any

from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from . import accounts
from .ai import admin as ai_admin  # noqa: F401 (registers the model versions' admin)
from .choices import Role
from .models import (
    AIResult,
    ApiToken,
    AuditEvent,
    Case,
    Finding,
    Image,
    Patient,
    PendingRole,
    PendingToken,
    Read,
    Study,
)
from .roles import signed_in


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "outcome", "object_type", "object_id"]
    list_filter = ["action", "outcome"]
    search_fields = ["actor_name", "object_id"]

    def get_actions(self, request):
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


# --- Accounts, tokens and lockouts --------------------------------------------------

User = get_user_model()
for _model in (User, Group, TokenProxy, AccessAttempt):
    # Roles are fixed groups (their permissions are not the app's business), DRF's token
    # admin prints keys and axes' unlocks unaudited: each is replaced or withdrawn here.
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class AdminRoleModelAdmin(admin.ModelAdmin):
    """Open to whoever manages accounts; nothing is deleted unless a subclass says so."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return accounts.manages_accounts(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return accounts.manages_accounts(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return accounts.manages_accounts(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return accounts.manages_accounts(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class AccountAdmin(AdminRoleModelAdmin, UserAdmin):
    """Roles, not permissions: no superuser flag, no staff flag, no per-user permissions.

    Accounts are deactivated, never deleted: reads and audit events name them.
    """

    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("is_active", "groups")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "usable_password", "password1", "password2", "groups"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")
    list_display = ("username", "first_name", "last_name", "roles", "is_active", "last_login")
    list_filter = ("is_active", "groups")
    filter_horizontal = ()

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("groups", "pending_roles")

    @admin.display(description="Roles")
    def roles(self, user: Any) -> str:
        waiting = {p.role for p in user.pending_roles.all()}
        held = sorted(g.name for g in user.groups.all() if g.name in Role.values)
        return ", ".join(f"{r} (awaits a second admin)" if r in waiting else r for r in held)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A superuser's password set by an admin would hand that admin everything.
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.pk == request.user.pk:
            return (*self.readonly_fields, "is_active", "groups")
        return self.readonly_fields

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "groups":
            kwargs["queryset"] = Group.objects.filter(name__in=Role.values).order_by("name")
            kwargs["widget"] = forms.CheckboxSelectMultiple
            kwargs["label"] = "Roles"
            kwargs["help_text"] = (
                "What the person may do; nobody can change their own roles. A radiologist, "
                "arbitrator or admin role you give works once another admin confirms it "
                "(under Pending roles)."
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        form.access_before = accounts.stored_access(obj.pk) if change else None
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        accounts.record_access_change(signed_in(request), form.instance, form.access_before)

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        user = self.get_object(request, unquote(id))
        with transaction.atomic():
            before = user.password if user is not None else None
            response = super().user_change_password(request, id, form_url)
            if user is not None:
                user.refresh_from_db(fields=["password"])
                if user.password != before:
                    accounts.record_password_set(signed_in(request), user)
        return response


class IssueTokenForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        help_text=(
            "For yourself, the key is shown now. For anyone else, no key exists until they "
            "sign in and confirm it (they see it then); their current token works until then."
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["days"] = forms.IntegerField(
            label="Valid for (days)",
            min_value=1,
            max_value=settings.API_TOKEN_MAX_DAYS,
            initial=settings.API_TOKEN_DAYS,
        )


@admin.register(ApiToken)
class ApiTokenAdmin(AdminRoleModelAdmin, TokenAdmin):
    """Issue (the key is shown once) and revoke API tokens; a token is never edited."""

    list_display = ("user", "created", "expires_at", "issued_by")
    fields = ("user", "created", "expires_at", "issued_by")
    readonly_fields = fields
    list_filter = ()

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("user", "expiry__issued_by")

    @admin.display(description="Expires")
    def expires_at(self, token: ApiToken) -> Any:
        return accounts.token_expires_at(token)

    @admin.display(description="Issued by")
    def issued_by(self, token: ApiToken) -> Any:
        expiry = getattr(token, "expiry", None)
        return expiry.issued_by if expiry is not None else "—"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return accounts.manages_accounts(request.user)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = IssueTokenForm(request.POST if request.method == "POST" else None)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "form": form}
        if form.is_valid():
            issued = accounts.issue_token(
                signed_in(request), form.cleaned_data["user"], form.cleaned_data["days"]
            )
            context.update(
                title="API token issued",
                holder=form.cleaned_data["user"],
                issued=issued if isinstance(issued, accounts.IssuedToken) else None,
                offered=issued if isinstance(issued, accounts.OfferedToken) else None,
            )
            return TemplateResponse(request, "screening/token_issued.html", context)
        context["title"] = "Issue an API token"
        return TemplateResponse(request, "screening/token_issue.html", context)

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        accounts.revoke_token(signed_in(request), obj.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for token in queryset.select_related("user"):
            accounts.revoke_token(signed_in(request), token.user)


@admin.register(AccessAttempt)
class SignInLockoutAdmin(AdminRoleModelAdmin):
    """Failed sign-ins by (account, address) pair; unlocking clears them, audited."""

    list_display = (
        "username",
        "ip_address",
        "failures_since_start",
        "locked_until",
        "attempt_time",
    )
    fields = list_display
    readonly_fields = list_display
    search_fields = ("username", "ip_address")
    ordering = ("-attempt_time",)
    actions = ["unlock_accounts", "unlock_addresses"]

    @admin.display(description="Locked until")
    def locked_until(self, attempt: AccessAttempt) -> Any:
        return accounts.locked_until(attempt) or "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Unlock these accounts (from every address)")
    def unlock_accounts(self, request: HttpRequest, queryset: Any) -> None:
        count = accounts.unlock_accounts(signed_in(request), queryset)
        self.message_user(request, f"{count} account(s) unlocked.")

    @admin.action(description="Unlock these addresses (for every account)")
    def unlock_addresses(self, request: HttpRequest, queryset: Any) -> None:
        count = accounts.unlock_addresses(signed_in(request), queryset)
        self.message_user(request, f"{count} address(es) unlocked.")


@admin.register(PendingRole)
class PendingRoleAdmin(AdminRoleModelAdmin):
    """Roles an admin gave (or held by an account whose password an admin set) that work only
    once another admin confirms them; confirming and refusing are audited."""

    list_display = ("user", "role", "reason", "granted_by", "granted_at")
    fields = list_display
    readonly_fields = list_display
    list_filter = ("role", "reason")
    actions = ["confirm", "refuse"]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("user", "granted_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Confirm these roles (you did not give them)")
    def confirm(self, request: HttpRequest, queryset: Any) -> None:
        confirmed, refused = accounts.confirm_roles(signed_in(request), queryset)
        self.message_user(request, f"{confirmed} role(s) confirmed.")
        for why in sorted(set(refused)):
            self.message_user(request, why, messages.ERROR)

    @admin.action(description="Refuse these roles (they are taken away)")
    def refuse(self, request: HttpRequest, queryset: Any) -> None:
        refused, skipped = accounts.refuse_roles(signed_in(request), queryset)
        self.message_user(request, f"{refused} role(s) refused and taken away.")
        for why in sorted(set(skipped)):
            self.message_user(request, why, messages.ERROR)


@admin.register(PendingToken)
class PendingTokenAdmin(AdminRoleModelAdmin):
    """Tokens issued for someone else that wait for their holder; nothing here has a key."""

    list_display = ("user", "issued_by", "issued_at", "days")
    fields = list_display
    readonly_fields = list_display

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("user", "issued_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
