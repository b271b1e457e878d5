"""The domain errors every verb raises and pages and the API turn into a response."""

from __future__ import annotations

from http import HTTPStatus


class DomainError(Exception):
    """A refusal the user can act on; ``status`` is the HTTP status it maps to."""

    status: int = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status = HTTPStatus.NOT_FOUND


class Conflict(DomainError):
    status = HTTPStatus.CONFLICT


class StorageFull(DomainError):
    """The media folder has no room left (or the quota is spent): nothing was kept."""

    status = HTTPStatus.INSUFFICIENT_STORAGE


class Forbidden(DomainError):
    """This person may never have this, whatever the state (their role or part in a case)."""

    status = HTTPStatus.FORBIDDEN
