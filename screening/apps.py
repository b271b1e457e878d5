from django.apps import AppConfig


class ScreeningConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "screening"
    verbose_name = "Screening"

    def ready(self) -> None:
        from django.core import checks

        from . import accounts, signals  # noqa: F401  (signal receivers)
        from .interop.pacs_delivery import check_destinations

        checks.register(check_destinations)
