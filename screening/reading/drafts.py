"""A read kept across a sign-out: the read form posted after the session ended is held in
the new (anonymous) session until its reader signs in again, then becomes their draft.

The page's own draft (``actions.save_draft``, saved as the reader types) needs a signed-in
reader; this covers the submit that arrives once the session is gone. The read goes back
only to the reader whose page sent it (the signed ``opened`` stamp names them): another
user signing in on the same browser never sees it.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.http import QueryDict

from . import actions
from .forms import ReadForm, opened_by

KEPT = "read_sent_after_signout"


def keep(session: SessionBase, case_id: int, posted: QueryDict) -> bool:
    """Hold a read posted without a session; False where there is nothing to hold."""
    reader = opened_by(posted.get("opened", ""), case_id)
    try:
        fields = ReadForm().draft(posted)
    except ValidationError:
        return False
    if reader is None or not fields:
        return False
    session[KEPT] = {"case": case_id, "by": reader, "fields": fields}
    return True


def take(session: SessionBase, reader: User, case_id: int) -> bool:
    """Turn a read held for this case into this reader's draft (dropped if it was another
    reader's); True when one was restored."""
    held = session.get(KEPT)
    if not isinstance(held, dict) or held.get("case") != case_id:
        return False
    del session[KEPT]
    if held.get("by") != reader.pk:
        return False
    return actions.save_draft(reader, case_id, held.get("fields") or {})
