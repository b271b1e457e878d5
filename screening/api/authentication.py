"""Token authentication that refuses an expired token."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from ..accounts import token_expired


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token, refused once past the expiry an admin gave it (``accounts.token_expires_at``)."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise AuthenticationFailed("Token has expired; ask an admin for a new one.")
        return user, token
