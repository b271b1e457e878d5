"""Sign-ins, sign-outs and failed sign-ins go to the audit trail."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from . import events


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    events.login_succeeded(user)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    events.logged_out(user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    events.login_failed(str(credentials.get("username", "")))
