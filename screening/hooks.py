"""What one capability announces and another answers, so neither imports the other.

Sent synchronously, inside the sender's transaction: a receiver that fails fails the
sender's verb as a direct call would, and a receiver that queues work defers it to the
commit (``transaction.on_commit``). Receivers are connected in ``apps.ScreeningConfig``.
"""

from django.dispatch import Signal

# A case has just closed (reading): its results are final. Keyword argument: ``case``.
# interop answers by queueing the case's delivery back into the PACS.
case_closed = Signal()
