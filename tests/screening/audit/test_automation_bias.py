"""Automation-bias figures on a constructed cohort: changes of mind after the AI was shown,
toward it or away, and whether they were right, per reader and overall."""

from __future__ import annotations

from django.urls import reverse

from screening.audit import automation_bias
from screening.audit.automation_bias import ALL_READERS, Revision
from screening.choices import Outcome, ReadingPolicy, RevisionTrigger
from screening.reading import actions
from screening.reading.actions import ReadInput
from tests.factories import ModelVersionFactory, case_with_images, read_input, score_case

SEQ = RevisionTrigger.SEQUENTIAL
Y, N = True, False


def cohort() -> list[Revision]:
    """(reader, unaided recall, AI recall, final recall, cancer)."""
    rows = [
        ("ann", N, Y, Y, Y),  # changed toward the AI, right
        ("ann", N, Y, N, N),  # kept
        ("ann", Y, Y, N, Y),  # changed away from the AI, wrong
        ("ann", Y, N, N, N),  # changed toward the AI, right
        ("bob", N, N, N, None),  # kept, outcome unknown
        ("bob", N, None, Y, None),  # changed; the AI suggested nothing
    ]
    return [Revision(r, SEQ, unaided, final, ai, cancer) for r, unaided, ai, final, cancer in rows]


def counts(p) -> tuple[int, int]:
    return (p.successes, p.n)


def test_the_figures_equal_a_hand_count_per_reader_and_overall():
    found = {f.reader: f for f in automation_bias.figures(cohort())}
    everyone, ann, bob = found[ALL_READERS], found["ann"], found["bob"]
    assert everyone.opinions == 6
    assert counts(everyone.changed) == (4, 6)
    assert counts(everyone.toward_ai) == (2, 3)
    assert counts(everyone.away_from_ai) == (1, 2)
    assert counts(everyone.right) == (2, 3)
    assert [counts(p) for p in (ann.changed, ann.toward_ai, ann.away_from_ai, ann.right)] == [
        (3, 4),
        (2, 3),
        (1, 1),
        (2, 3),
    ]
    assert [counts(p) for p in (bob.changed, bob.toward_ai, bob.away_from_ai, bob.right)] == [
        (1, 2),
        (0, 0),
        (0, 1),
        (0, 0),
    ]


def test_each_figure_has_a_wilson_interval_around_it():
    everyone = automation_bias.figures(cohort())[0]
    ci = everyone.changed.ci
    assert ci is not None and ci.low < 4 / 6 < ci.high
    assert automation_bias.figures(cohort())[2].toward_ai.ci is None  # bob: none to move


def test_triggers_are_counted_apart():
    net = Revision("ann", RevisionTrigger.SAFETY_NET, N, Y, Y, Y)
    found = automation_bias.figures([*cohort(), net])
    safety = [f for f in found if f.trigger == RevisionTrigger.SAFETY_NET]
    assert [(f.reader, f.opinions) for f in safety] == [(ALL_READERS, 1), ("ann", 1)]


def test_revisions_recorded_through_the_read_verb_reach_the_auditor_page(
    client, admin_user, radiologist, auditor
):
    version = ModelVersionFactory(is_active=True)
    actions.set_policy(admin_user, ReadingPolicy.SAFETY_NET)
    case = case_with_images(images=1, outcome=Outcome.MALIGNANT)
    score_case(case, 0.9, version)
    actions.submit_read(radiologist, case.pk, read_input(False))  # held by the safety net
    changed = ReadInput(**{**read_input(True).__dict__, "reason": "AI region convinced me"})
    actions.submit_read(radiologist, case.pk, changed)
    (everyone, _) = automation_bias.figures()
    assert [counts(p) for p in (everyone.changed, everyone.toward_ai, everyone.right)] == [
        (1, 1),
        (1, 1),
        (1, 1),
    ]
    client.force_login(auditor)
    page = client.get(reverse("audit-dashboard")).content.decode()
    assert 'id="automation-bias"' in page and "Safety net" in page and "rad1" in page
