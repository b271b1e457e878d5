"""Login everywhere but the login page (the API answers 401/403 itself instead of
redirecting), and the session's idle timeout."""

import time

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.sessions.backends.base import SessionBase
from django.shortcuts import render

TOUCHED = "_touched"


class PagesLoginRequiredMiddleware(LoginRequiredMiddleware):
    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class SessionIdleMiddleware:
    """The 30-minute idle timeout without a database write on every request.

    Saving the session on each request (``SESSION_SAVE_EVERY_REQUEST``) cost a
    BEGIN/UPDATE/COMMIT per page. Here a signed-in session is re-saved, and so its expiry
    moved on, only when its last save is ``SESSION_TOUCH_SECONDS`` old: the idle timeout
    stays the cookie age, give or take that interval.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if session is not None and session.session_key and not session.is_empty():
            now = int(time.time())
            if now - session.get(TOUCHED, 0) >= settings.SESSION_TOUCH_SECONDS:
                session[TOUCHED] = now  # marks it modified: SessionMiddleware saves it
        return response


def extend_session(session: SessionBase) -> None:
    """Move the idle timeout on now (the reader asked to stay signed in)."""
    session[TOUCHED] = int(time.time())


def session_expires_in(session: SessionBase) -> int:
    """Seconds until this session ends if nothing else happens, as ``SessionIdleMiddleware``
    will leave it after the current request (so the page can warn before it ends)."""
    now = int(time.time())
    touched = session.get(TOUCHED, 0)
    if now - touched >= settings.SESSION_TOUCH_SECONDS:
        touched = now
    return max(touched + settings.SESSION_COOKIE_AGE - now, 0)


class MethodNotAllowedPageMiddleware:
    """A page opened with the wrong method (a bookmarked POST-only address, say) gets a
    page in the site's layout saying so, not a blank 405. Only for a browser asking for
    HTML and an empty answer: the API's and DICOMweb's refusals keep their own bodies."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code != 405 or response.content or not request.accepts("text/html"):
            return response
        page = render(request, "405.html", {"method": request.method}, status=405)
        page["Allow"] = response.get("Allow", "")
        return page
