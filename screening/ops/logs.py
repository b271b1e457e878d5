"""Log lines: one JSON object per line in production, the same for web and worker.

Every line carries what ties it to its cause: the request id (web, taken from a sane
``X-Request-ID`` or made here, and echoed in the response) or the task id (worker), and
database ids (the signed-in user, ``*_id`` integers a logger passes as ``extra``). Never an
identifier: Django's request and server loggers quote the path (file names, DICOM UIDs)
and the query string, so their lines are cut to method, status and reason.

``LOG_FORMAT=plain`` keeps the classic one-line text (development and tests).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from celery import current_task
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.functional import LazyObject

access_log = logging.getLogger("screening.request")

_request: ContextVar[HttpRequest | None] = ContextVar("request", default=None)

# A proxy's or load balancer's id (UUIDs, hex, AWS-style "1-abc-def") passes; anything that
# could carry text a person typed, or break a log parser, is replaced by a fresh id.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")
# Requests an orchestrator or a scraper makes every few seconds: logged at DEBUG only.
PROBE_VIEWS = frozenset({"healthz", "readyz", "metrics"})
ACCESS_FIELDS = ("method", "view", "status", "duration_ms")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RequestLogMiddleware:
    """First in MIDDLEWARE: every line logged while a request runs carries its id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = incoming_request_id(request.headers.get("X-Request-ID"))
        # Read back by the log lines of this request (request_fields).
        request.request_id = request_id  # type: ignore[attr-defined]
        token = _request.set(request)
        start = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            _log_access(request, response, time.perf_counter() - start)
            return response
        finally:
            _request.reset(token)


def incoming_request_id(header: str | None) -> str:
    if header and SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def view_name(request: HttpRequest) -> str:
    """The URL pattern's name (bounded, no ids in it), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match:
        return match.view_name
    static = "/" + settings.STATIC_URL.lstrip("/")
    return "static" if request.path.startswith(static) else "unresolved"


def method_of(request: HttpRequest) -> str:
    """The HTTP method, or ``other`` for an invented one (a client chooses it freely)."""
    return request.method if request.method in METHODS else "other"


def _log_access(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
    view = view_name(request)
    level = logging.DEBUG if view in PROBE_VIEWS else logging.INFO
    fields = {
        "method": method_of(request),
        "view": view,
        "status": response.status_code,
        "duration_ms": round(seconds * 1000, 1),
    }
    access_log.log(level, "%s %s %s", fields["method"], view, response.status_code, extra=fields)


def _loaded_user_id(request: HttpRequest) -> int | None:
    """The signed-in user's id if the request has looked them up already: a log line must
    not add a session query (healthz touches no database)."""
    user = request.__dict__.get("_cached_user")  # set once Django's lazy user is evaluated
    if user is None:
        user = request.__dict__.get("user")  # DRF puts the user it authenticated here
        if user is None or isinstance(user, LazyObject):
            return None
    return user.pk if getattr(user, "is_authenticated", False) else None


def context(record: logging.LogRecord) -> dict[str, Any]:
    """Request or task ids of the line being written (in the thread that writes it).

    Django logs a 4xx/5xx answer after the last middleware returned, with the request
    attached to the record: the id comes from there then.
    """
    fields: dict[str, Any] = {}
    request = _request.get() or getattr(record, "request", None)
    if isinstance(request, HttpRequest) and hasattr(request, "request_id"):
        fields["request_id"] = request.request_id
        user_id = _loaded_user_id(request)
        if user_id is not None:
            fields["user_id"] = user_id
    task = current_task
    if task:
        fields["task_id"] = task.request.id
        fields["task"] = task.name
        args = list(task.request.args or ())
        if args and all(type(a) is int for a in args):  # tasks take primary keys
            fields["task_args"] = args
    return fields


def safe_message(record: logging.LogRecord) -> str:
    """The line's message, with the path and query string of Django's own lines removed."""
    if record.name == "django.request" and isinstance(record.args, tuple) and record.args:
        return str(record.args[0])  # "Not Found", "Bad Request", "Internal Server Error"
    if record.name == "django.server" and isinstance(record.args, tuple) and record.args:
        method = str(record.args[0]).split(" ", 1)[0]
        return f"{method} {record.args[1] if len(record.args) > 1 else ''}".strip()
    return record.getMessage()


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """Fields passed with ``extra``: access-line fields and database ids (``*_id`` ints)."""
    fields = {}
    for key, value in vars(record).items():
        if key in _RECORD_ATTRIBUTES:
            continue
        if key in ACCESS_FIELDS or (key.endswith("_id") and type(value) is int):
            fields[key] = value
    request = getattr(record, "request", None)
    if record.name == "django.request" and isinstance(request, HttpRequest):
        fields["status"] = getattr(record, "status_code", None)
        fields["view"] = view_name(request)
    return fields


class QuietProbes(logging.Filter):
    """On ``django.request``: a failing readiness probe is answered, and logged by its view
    with the checks that failed, not as a server error every few seconds."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        probe = request is not None and view_name(request) == "readyz"
        return not (probe and getattr(record, "status_code", None) == 503)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": safe_message(record),
            **context(record),
            **_extras(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """``time LEVEL logger message [request_id=… user_id=…]`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        copy = logging.makeLogRecord(vars(record))
        copy.msg, copy.args = safe_message(record), None
        ids = {**context(record), **{k: v for k, v in _extras(record).items() if k.endswith("_id")}}
        text = super().format(copy)
        if not ids:
            return text
        tail = " ".join(f"{key}={value}" for key, value in ids.items())
        first, newline, rest = text.partition("\n")
        return f"{first} [{tail}]{newline}{rest}"
