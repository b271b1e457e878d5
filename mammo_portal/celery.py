"""The Celery application: configured from Django settings, tasks autodiscovered."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mammo_portal.settings")

app = Celery("mammo_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The tasks live in their capabilities (screening.ai, .audit, .interop), not at the top level.
app.autodiscover_tasks(["screening.ai", "screening.audit", "screening.interop"])
