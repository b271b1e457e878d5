from django.apps import AppConfig


class ScreeningConfig(AppConfig):
    """The app's wiring, above the capabilities: it connects each capability's receivers."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "screening"
    verbose_name = "Screening"

    def ready(self) -> None:
        from django.core import checks

        from . import accounts, hooks, signals  # noqa: F401  (signal receivers)
        from .interop import pacs_delivery

        checks.register(pacs_delivery.check_destinations)
        hooks.case_closed.connect(pacs_delivery.on_case_closed, dispatch_uid="pacs-delivery")
