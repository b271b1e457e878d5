"""Free text as people see it: Unicode bidirectional controls are shown, never obeyed.

A reason, an AI error or a name that carries U+202E (right-to-left override) and its kin
can make a page or a spreadsheet show text in another order than it was written ("recall"
read backwards, a case number reversed). Every control becomes a visible ``[U+202E]``
marker instead, on the pages (``templatetags.safe_text``) and in CSV exports. Kernel: the
capabilities and the template tags both use it, so it sits below them.
"""

from __future__ import annotations

# Embeddings and overrides, isolates, and the implicit marks (LRM, RLM, ALM).
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
_VISIBLE = {ord(char): f"[U+{ord(char):04X}]" for char in BIDI_CONTROLS}


def neutralise_bidi(text: str) -> str:
    return text.translate(_VISIBLE)
