"""What a read says: per-breast BI-RADS, density and findings, and the decision they imply.

Pure functions, no database: the same rules check the page's form, the API and the tests.
The decision (recall or no recall) is derived from the per-breast categories, never typed
twice; a decision sent alongside is a confirmation and must match what the categories say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..choices import (
    BIRADS_CONCERN_ORDER,
    BIRADS_FOR_DECISION,
    BIRADS_NEEDING_FINDINGS,
    BIRADS_REFUSING_FINDINGS,
    MARK_POINTS,
    BiRads,
    Breast,
    Decision,
    Density,
    FindingDepth,
    FindingSite,
    FindingType,
    MarkShape,
)


class AssessmentError(ValueError):
    """The read does not hold together; the message tells the reader what to change."""


@dataclass(frozen=True)
class Mark:
    """Where a finding was marked: a film (its id) and the shape's points on it, in the
    stored film's pixel coordinates (``choices.MarkShape``)."""

    image: int
    shape: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Film:
    """What the rules need of a film a mark may be on: its side and its size in pixels."""

    breast: str
    width: int
    height: int


@dataclass(frozen=True)
class FindingInput:
    breast: str
    finding: str
    site: str
    depth: str = ""
    mark: Mark | None = None


@dataclass(frozen=True)
class Assessment:
    """A read's content as entered. Every new read carries per-breast categories and density;
    ``birads`` and ``decision``, if given, only confirm what the categories mean."""

    birads_right: int | None = None
    birads_left: int | None = None
    density: str = ""
    findings: tuple[FindingInput, ...] = ()
    birads: int | None = None
    decision: str = ""


@dataclass(frozen=True)
class Resolved:
    decision: str
    birads: int


def decision_for(birads: int) -> str:
    """Recall or no recall for one category (1 and 2 are the only reassuring ones)."""
    for decision, categories in BIRADS_FOR_DECISION.items():
        if birads in categories:
            return decision
    raise AssessmentError(f"BI-RADS {birads} is not a category (0 to 6).")


def overall(birads_right: int, birads_left: int) -> int:
    """The case's category: its most concerning breast's."""
    return max(birads_right, birads_left, key=BIRADS_CONCERN_ORDER.index)


# The normal screen, recorded by the reading room's one key: both breasts negative.
NORMAL_READ = BiRads.NEGATIVE


def browser_rules() -> dict[str, object]:
    """The rules the case page explains and its keys follow, sent to the browser as they
    are here (``json_script``) so the page never holds a second copy that could drift."""
    return {
        "categories": [int(value) for value in BiRads.values],
        "concern": [int(value) for value in BIRADS_CONCERN_ORDER],
        "recall": sorted(int(value) for value in BIRADS_FOR_DECISION[Decision.RECALL]),
        "needs_finding": sorted(int(value) for value in BIRADS_NEEDING_FINDINGS),
        "refuses_finding": sorted(int(value) for value in BIRADS_REFUSING_FINDINGS),
        "densities": list(Density.values),
        "normal": int(NORMAL_READ),
        "decisions": {"recall": Decision.RECALL.value, "no_recall": Decision.NO_RECALL.value},
    }


def resolve(entered: Assessment, films: Mapping[int, Film] | None = None) -> Resolved:
    """Check a read and return the decision and overall category it records.

    A whole-case category alone (the API's first payload) is refused: reads without
    per-breast categories and density would drop out of the auditor's density figures.
    ``films``: the case's own films by id, the only ones a finding may be marked on.
    """
    if entered.birads_right is None or entered.birads_left is None:
        raise AssessmentError("Give a BI-RADS category for each breast, right and left.")
    for category in (entered.birads_right, entered.birads_left):
        if category not in BiRads.values:
            raise AssessmentError(f"BI-RADS {category} is not a category (0 to 6).")
    if entered.density not in Density.values:
        raise AssessmentError("Give the breast density (ACR a to d).")
    category = overall(entered.birads_right, entered.birads_left)
    decision = decision_for(category)
    if entered.decision and entered.decision != decision:
        raise AssessmentError(
            f"The categories you chose (right {entered.birads_right}, left "
            f"{entered.birads_left}) mean {Decision(decision).label.lower()}, not "
            f"{Decision(entered.decision).label.lower()}. Change the categories or the decision."
        )
    if entered.birads is not None and entered.birads != category:
        raise AssessmentError(
            f"The case's category is {category} (its most concerning breast), not {entered.birads}."
        )
    _check_findings(entered)
    for item in entered.findings:
        if item.mark is not None:
            check_mark(item.mark, item.breast, films or {})
    return Resolved(decision, category)


def check_mark(mark: Mark, breast: str, films: Mapping[int, Film]) -> None:
    """A mark must lie on one of the case's own films, of the finding's breast, inside it.

    A point on the film's edge is on it: SCOORD puts the film's far corner at (width, height).
    """
    film = films.get(mark.image)
    if film is None:
        raise AssessmentError("A finding is marked on a film that is not one of this case's.")
    if mark.shape not in MarkShape.values:
        raise AssessmentError(f"A mark is one of: {', '.join(MarkShape.values)}.")
    if len(mark.points) != MARK_POINTS[MarkShape(mark.shape)]:
        count = MARK_POINTS[MarkShape(mark.shape)]
        raise AssessmentError(f"A mark of shape {mark.shape} has {count} point(s) (x, y).")
    if film.breast in Breast.values and film.breast != breast:
        side = Breast(breast).label.lower()
        raise AssessmentError(f"A finding in the {side} breast is marked on a film of the other.")
    for x, y in mark.points:
        if not (0 <= x <= film.width and 0 <= y <= film.height):
            raise AssessmentError(
                f"A mark's point ({x:g}, {y:g}) lies outside its film "
                f"({film.width}×{film.height} pixels)."
            )


def _check_findings(entered: Assessment) -> None:
    by_breast = {Breast.RIGHT: entered.birads_right, Breast.LEFT: entered.birads_left}
    for item in entered.findings:
        if item.breast not in Breast.values:
            raise AssessmentError("A finding's breast must be R or L.")
        if item.finding not in FindingType.values:
            raise AssessmentError(f"Unknown finding type; use {', '.join(FindingType.values)}.")
        if item.site not in FindingSite.values:
            raise AssessmentError("A finding needs its site: a clock-face hour or a quadrant.")
        if item.depth and item.depth not in FindingDepth.values:
            raise AssessmentError("Depth must be anterior, middle or posterior.")
        if by_breast[Breast(item.breast)] in BIRADS_REFUSING_FINDINGS:
            side = Breast(item.breast).label.lower()
            raise AssessmentError(f"A finding is recorded in the {side} breast, assessed negative.")
    for breast, category in by_breast.items():
        named = any(item.breast == breast for item in entered.findings)
        if category in BIRADS_NEEDING_FINDINGS and not named:
            raise AssessmentError(
                f"The {breast.label.lower()} breast is BI-RADS {category}: record what you "
                "saw there (finding and site)."
            )
