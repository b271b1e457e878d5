"""Automation bias: how readers' opinions moved once they were shown the AI.

Under sequential reveal and the safety net a reader commits an unaided opinion, is shown the
AI, then gives their final read (``UnaidedOpinion``), so each change of mind is recorded
with what the AI said. Counted per reader and for all readers, per trigger:
- changed: final decision differs from the unaided one, of all opinions;
- toward the AI: changed to the AI's decision, of the opinions the AI disagreed with;
- away from the AI: changed from the AI's decision, of the opinions the AI agreed with;
- right: the final decision matched the outcome (recall for a cancer, no recall otherwise),
  of the changes whose outcome is known.
Each with a Wilson 95 % interval (``stats.wilson``). An opinion shown a version that
suggests nothing (not validated for triage) counts as changed, but neither toward nor away.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from ..choices import Decision, Outcome, RevisionTrigger
from ..models import UnaidedOpinion
from .stats import Proportion

ALL_READERS = "All readers"


@dataclass(frozen=True)
class Revision:
    """One unaided opinion and the final read that followed it."""

    reader: str
    trigger: str
    unaided_recall: bool
    final_recall: bool
    ai_recall: bool | None
    cancer: bool | None


@dataclass(frozen=True)
class BiasFigures:
    reader: str
    trigger: str
    opinions: int
    changed: Proportion
    toward_ai: Proportion
    away_from_ai: Proportion
    right: Proportion

    @property
    def trigger_label(self) -> str:
        return RevisionTrigger(self.trigger).label


def revisions() -> list[Revision]:
    """Every unaided opinion whose final read is recorded, with the case's outcome."""
    rows = UnaidedOpinion.objects.filter(read__isnull=False).values_list(
        "reader__username", "trigger", "decision", "read__decision", "ai_recall", "case__outcome"
    )
    return [
        Revision(
            reader=reader,
            trigger=trigger,
            unaided_recall=unaided == Decision.RECALL,
            final_recall=final == Decision.RECALL,
            ai_recall=ai_recall,
            cancer=None if not outcome else outcome == Outcome.MALIGNANT,
        )
        for reader, trigger, unaided, final, ai_recall, outcome in rows
    ]


def figures_of(reader: str, trigger: str, group: Iterable[Revision]) -> BiasFigures:
    """The figures of one group of revisions (one reader, or all, under one trigger)."""
    group = list(group)
    changed = [r for r in group if r.final_recall != r.unaided_recall]
    disagreed = [r for r in group if r.ai_recall is not None and r.ai_recall != r.unaided_recall]
    agreed = [r for r in group if r.ai_recall is not None and r.ai_recall == r.unaided_recall]
    judged = [r for r in changed if r.cancer is not None]
    return BiasFigures(
        reader=reader,
        trigger=trigger,
        opinions=len(group),
        changed=Proportion(len(changed), len(group)),
        toward_ai=Proportion(sum(r.final_recall == r.ai_recall for r in disagreed), len(disagreed)),
        away_from_ai=Proportion(sum(r.final_recall != r.ai_recall for r in agreed), len(agreed)),
        right=Proportion(sum(r.final_recall == r.cancer for r in judged), len(judged)),
    )


def figures(found: list[Revision] | None = None) -> list[BiasFigures]:
    """Per trigger: all readers first, then each reader by name."""
    found = revisions() if found is None else found
    by_trigger: dict[str, list[Revision]] = defaultdict(list)
    for revision in found:
        by_trigger[revision.trigger].append(revision)
    out = []
    for trigger in RevisionTrigger.values:
        group = by_trigger.get(trigger, [])
        if not group:
            continue
        out.append(figures_of(ALL_READERS, trigger, group))
        for reader in sorted({r.reader for r in group}):
            out.append(figures_of(reader, trigger, (r for r in group if r.reader == reader)))
    return out
