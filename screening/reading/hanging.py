"""The screening hanging protocol: which film the case page puts in which viewport.

Screening readers hang the four standard views as RCC | LCC over RMLO | LMLO, back to
back (each film turned so the chest walls meet in the middle; the viewer does the
turning). Any other film of the study (an extra view, a second exposure, a film without
side or view) follows the four, in upload order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..choices import Laterality, View
from ..models import AIResult, Image

SLOTS = ("RCC", "LCC", "RMLO", "LMLO")
SIDES = {Laterality.RIGHT.value, Laterality.LEFT.value}
PAIRED_VIEWS = {View.CC.value, View.MLO.value}


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
