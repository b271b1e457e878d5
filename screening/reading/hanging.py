"""The screening hanging protocols: which films the case page hangs, and how.

The page lists the four standard views first (RCC, LCC, RMLO, LMLO, the first film of
each), then any other film of the study (an extra view, a second exposure, a film without
side or view) in upload order. The viewer (``viewer/src/hanging.js``) hangs them by the
protocol the reader chose (``HangingProtocol``: 1×4 in the site's order, the CC or MLO
pair, current and prior of one view, a single film), each film filling its viewport's
height, back to back (turned so the chest walls meet in the middle).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from ..choices import HangingProtocol, Laterality, View
from ..models import AIResult, Image

SLOTS = ("RCC", "LCC", "RMLO", "LMLO")
SIDES = {Laterality.RIGHT.value, Laterality.LEFT.value}
PAIRED_VIEWS = {View.CC.value, View.MLO.value}
PAIR_PROTOCOLS = {
    HangingProtocol.CC.value: View.CC.value,
    HangingProtocol.MLO.value: View.MLO.value,
}


@dataclass(frozen=True)
class Panel:
    image: Image
    result: AIResult | None
    slot: str  # one of SLOTS, or "" for a film outside the four

    @property
    def side(self) -> str:
        return self.image.laterality

    @property
    def view(self) -> str:
        return self.slot[1:] if self.slot else ""

    @property
    def label(self) -> str:
        return f"{self.slot[0]} {self.slot[1:]}" if self.slot else self.image.label


def hang(films: Iterable[tuple[Image, AIResult | None]]) -> list[Panel]:
    """The films in hanging order: the four slots first (the first film of each), then the rest."""
    placed: dict[str, Panel] = {}
    rest: list[Panel] = []
    for image, result in sorted(films, key=lambda film: film[0].pk):
        slot = image.laterality + image.view
        if image.laterality in SIDES and image.view in PAIRED_VIEWS and slot not in placed:
            placed[slot] = Panel(image, result, slot)
        else:
            rest.append(Panel(image, result, ""))
    return [placed[slot] for slot in SLOTS if slot in placed] + rest


def viewer_rules(default: str) -> dict[str, object]:
    """What the viewer hangs by, sent with the page: the protocols in the order <kbd>L</kbd>
    cycles them, the view each pair shows, the site's 1×4 order (``HANGING_ROW_ORDER``) and
    this reader's default."""
    return {
        "protocols": [[protocol.value, protocol.label] for protocol in HangingProtocol],
        "pair_views": PAIR_PROTOCOLS,
        "row_order": list(settings.HANGING_ROW_ORDER),
        "default": default,
    }
