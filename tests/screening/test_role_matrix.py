"""Every page and API endpoint × every role: the exact status code of each pair."""

from __future__ import annotations

import pytest
from django.urls import reverse

from screening.interop.stored_dicom import StoredInstance
from tests.factories import (
    ModelVersionFactory,
    UserFactory,
    case_with_images,
    dicom_case_with_images,
    read_case,
)

ANON, RAD, ARB, ADMIN, AUD, NONE = (
    "anonymous",
    "radiologist",
    "arbitrator",
    "admin",
    "auditor",
    "roleless",
)
ROLES = [ANON, RAD, ARB, ADMIN, AUD, NONE]


def page(allowed: set[str], ok: int = 200, anon: int = 302) -> dict[str, int]:
    """Pages send strangers to the login page and refuse other roles with 403."""
    return {role: ok if role in allowed else (anon if role == ANON else 403) for role in ROLES}


def api(allowed: set[str], ok: int = 200) -> dict[str, int]:
    return {role: ok if role in allowed else (401 if role == ANON else 403) for role in ROLES}


# (name, method, url builder, {role: status})
MATRIX = [
    (
        "home",
        "get",
        lambda o: reverse("home"),
        {ANON: 302, RAD: 302, ARB: 302, ADMIN: 302, AUD: 302, NONE: 403},
    ),
    (
        "login",
        "get",
        lambda o: reverse("login"),
        {ANON: 200, RAD: 302, ARB: 302, ADMIN: 302, AUD: 302, NONE: 302},
    ),
    ("account", "get", lambda o: reverse("account"), page({RAD, ARB, ADMIN, AUD, NONE})),
    ("worklist", "get", lambda o: reverse("worklist"), page({RAD, ARB})),
    ("case list", "get", lambda o: reverse("case-list"), page({AUD})),
    (
        "case detail",
        "get",
        lambda o: reverse("case-detail", args=[o["case"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "case read",
        "post",
        lambda o: reverse("case-read", args=[o["case"].pk]),
        page({RAD, ARB}, ok=400),
    ),
    (
        "case draft",
        "post",
        lambda o: reverse("case-draft", args=[o["case"].pk]),
        # An arbitrator gives no first read, so keeps no draft of one (409).
        {ANON: 401, RAD: 200, ARB: 409, ADMIN: 403, AUD: 403, NONE: 403},
    ),
    (
        "reading settings",
        "post",
        lambda o: reverse("reading-settings"),
        page({RAD, ARB}, ok=302),
    ),
    ("reading policy", "get", lambda o: reverse("reading-policy"), page({ADMIN})),
    ("reading policy set", "post", lambda o: reverse("reading-policy"), page({ADMIN}, ok=400)),
    (
        "favicon",
        "get",
        lambda o: reverse("favicon"),
        {ANON: 200, RAD: 200, ARB: 200, ADMIN: 200, AUD: 200, NONE: 200},
    ),
    (
        "stay signed in",
        "post",
        lambda o: reverse("stay-signed-in"),
        {ANON: 401, RAD: 200, ARB: 200, ADMIN: 200, AUD: 200, NONE: 200},
    ),
    (
        "image file",
        "get",
        lambda o: reverse("image-file", args=[o["image"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "image preview",
        "get",
        lambda o: reverse("image-preview", args=[o["image"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "heatmap file",
        "get",
        lambda o: reverse("heatmap-file", args=[o["heatmap"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "case ai panel",
        "get",
        lambda o: reverse("case-ai-panel", args=[o["case"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "case ai status",
        "get",
        lambda o: reverse("case-ai-status", args=[o["case"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "worklist ai status",
        "get",
        lambda o: reverse("worklist-ai-status") + f"?ids={o['case'].pk}",
        page({RAD, ARB, AUD}),
    ),
    ("ai queue", "get", lambda o: reverse("ai-queue"), page({ADMIN})),
    (
        "ai retry",
        "post",
        lambda o: reverse("ai-retry", args=[o["heatmap"].pk]),
        page({ADMIN}, ok=302),
    ),
    ("audit trail", "get", lambda o: reverse("audit-trail"), page({AUD, ADMIN})),
    ("audit trail export", "get", lambda o: reverse("audit-trail-export"), page({AUD, ADMIN})),
    ("performance dashboard", "get", lambda o: reverse("audit-dashboard"), page({AUD})),
    ("drift", "get", lambda o: reverse("audit-drift"), page({AUD})),
    ("discordant cases", "get", lambda o: reverse("audit-discordant"), page({AUD})),
    ("local validation", "get", lambda o: reverse("audit-local"), page({AUD})),
    ("policy simulator", "get", lambda o: reverse("audit-simulate"), page({AUD, ADMIN})),
    (
        "policy simulator export",
        "get",
        lambda o: reverse("audit-simulate-export"),
        page({AUD, ADMIN}),
    ),
    # Refused by the verb (no local evidence, no such proposal, nothing to switch off): the
    # allowed role is sent back to the models page with the reason; every other role gets 403.
    (
        "triage propose",
        "post",
        lambda o: reverse("triage-propose", args=[o["model"].pk]),
        page({ADMIN}, ok=302),
    ),
    (
        "triage confirm",
        "post",
        lambda o: reverse("triage-confirm", args=[999_999]),
        page({AUD}, ok=302),
    ),
    (
        "triage off",
        "post",
        lambda o: reverse("triage-off", args=[o["model"].pk]),
        page({ADMIN, AUD}, ok=302),
    ),
    (
        "report export",
        "get",
        lambda o: reverse("audit-export", args=["cases"]),
        page({AUD}),
    ),
    ("upload page", "get", lambda o: reverse("upload"), page({ADMIN})),
    ("upload post", "post", lambda o: reverse("upload"), page({ADMIN}, ok=400)),
    ("study list", "get", lambda o: reverse("study-list"), page({ADMIN})),
    ("model versions", "get", lambda o: reverse("model-versions"), page({ADMIN, AUD})),
    (
        "model activate",
        "post",
        lambda o: reverse("model-activate", args=[o["model"].pk]),
        page({ADMIN}, ok=302),
    ),
    (
        "model silent trial start",
        "post",
        lambda o: reverse("model-silent-trial-start", args=[o["model"].pk]),
        page({ADMIN}, ok=302),
    ),
    (
        "model silent trial stop",
        "post",
        lambda o: reverse("model-silent-trial-stop", args=[o["model"].pk]),
        page({ADMIN}, ok=302),
    ),
    (
        "django admin",
        "get",
        lambda o: reverse("admin:index"),
        # Signed in without the admin role: the app's 403, not Django's sign-in form.
        {ANON: 302, RAD: 403, ARB: 403, ADMIN: 200, AUD: 403, NONE: 403},
    ),
    (
        "api schema",
        "get",
        lambda o: reverse("api-schema"),
        {ANON: 401, RAD: 200, ARB: 200, ADMIN: 200, AUD: 200, NONE: 200},
    ),
    ("api worklist", "get", lambda o: reverse("api-case-list"), api({RAD, ARB})),
    (
        "api case detail",
        "get",
        lambda o: reverse("api-case-detail", args=[o["case"].pk]),
        api({RAD, ARB, AUD}),
    ),
    (
        "api read create",
        "post",
        lambda o: reverse("api-case-reads", args=[o["case"].pk]),
        api({RAD, ARB}, ok=400),
    ),
    ("api outcome", "post", lambda o: reverse("api-outcome"), api({ADMIN}, ok=400)),
    ("api study upload", "post", lambda o: reverse("api-study-list"), api({ADMIN}, ok=400)),
    (
        "api image file",
        "get",
        lambda o: reverse("api-image-file", args=[o["image"].pk]),
        api({RAD, ARB, AUD}),
    ),
    (
        "api heatmap file",
        "get",
        lambda o: reverse("api-heatmap-file", args=[o["heatmap"].pk]),
        api({RAD, ARB, AUD}),
    ),
    ("api policies", "get", lambda o: reverse("api-policy-list"), api({RAD, ARB, ADMIN, AUD})),
    (
        "api policy set",
        "post",
        lambda o: reverse("api-policy-list"),
        api({ADMIN}, ok=415),
    ),  # JSON only: the empty multipart body is refused by its type
    ("api model versions", "get", lambda o: reverse("api-model-version-list"), api({ADMIN, AUD})),
    (
        "api model activate",
        "post",
        lambda o: reverse("api-model-version-activate", args=[o["model"].pk]),
        api({ADMIN}),
    ),
    (
        "api model start silent trial",
        "post",
        lambda o: reverse("api-model-version-start-silent-trial", args=[o["model"].pk]),
        api({ADMIN}),
    ),
    (
        # The version is not in silent trial here: the admin is told so (409).
        "api model stop silent trial",
        "post",
        lambda o: reverse("api-model-version-stop-silent-trial", args=[o["model"].pk]),
        api({ADMIN}, ok=409),
    ),
    (
        "api model scores",
        "get",
        lambda o: reverse("api-model-version-scores", args=[o["model"].pk]),
        api({AUD}),
    ),
    # A form post is not multipart/related: the admin gets 415, everyone else never gets that far.
    ("dicomweb stow", "post", lambda o: reverse("dicomweb-studies"), api({ADMIN}, ok=415)),
    ("dicomweb qido", "get", lambda o: reverse("dicomweb-studies"), api({ADMIN, AUD})),
    *[
        (
            f"wado {name}",
            "get",
            lambda o, name=name: reverse(name, kwargs=o["wado"][name]),
            api({RAD, ARB, AUD}),
        )
        for name in (
            "wado-study",
            "wado-study-metadata",
            "wado-series",
            "wado-series-metadata",
            "wado-instance",
            "wado-instance-metadata",
            "wado-frames",
        )
    ],
    (
        "study ai report",
        "get",
        lambda o: reverse("study-ai-report", args=[o["dicom_study"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "heatmap dicom",
        "get",
        lambda o: reverse("heatmap-dicom", args=[o["dicom_result"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "api study ai report",
        "get",
        lambda o: reverse("api-study-ai-report", args=[o["dicom_study"].pk]),
        api({RAD, ARB, AUD}),
    ),
    (
        "api heatmap dicom",
        "get",
        lambda o: reverse("api-heatmap-dicom", args=[o["dicom_result"].pk]),
        api({RAD, ARB, AUD}),
    ),
    # Only the readers of the closed case (RAD first, ARB arbitration) and auditors.
    (
        "case read report",
        "get",
        lambda o: reverse("case-read-report", args=[o["closed_case"].pk]),
        page({RAD, ARB, AUD}),
    ),
    (
        "api case read report",
        "get",
        lambda o: reverse("api-case-read-report", args=[o["closed_case"].pk]),
        api({RAD, ARB, AUD}),
    ),
    # A case's PACS send status, and the overview: admins only.
    ("pacs deliveries", "get", lambda o: reverse("pacs-deliveries"), page({ADMIN})),
    (
        "case pacs deliveries",
        "get",
        lambda o: reverse("case-pacs-deliveries", args=[o["closed_case"].pk]),
        page({ADMIN}),
    ),
    (  # no such delivery here: an admin is sent back to the page with the reason
        "case pacs delivery send now",
        "post",
        lambda o: reverse("case-pacs-delivery-send-now", args=[o["closed_case"].pk, 999999]),
        page({ADMIN}, ok=302),
    ),
    (
        "api case pacs deliveries",
        "get",
        lambda o: reverse("api-case-pacs-deliveries", args=[o["closed_case"].pk]),
        api({ADMIN}),
    ),
    # Probes need no login (no model version is active here, so not ready); the scraper needs
    # the metrics token, which no role's session stands in for.
    ("healthz", "get", lambda o: reverse("healthz"), dict.fromkeys(ROLES, 200)),
    ("readyz", "get", lambda o: reverse("readyz"), dict.fromkeys(ROLES, 503)),
    ("metrics", "get", lambda o: reverse("metrics"), dict.fromkeys(ROLES, 403)),
]


def arbitrated(first, arbitrator):
    """A closed DICOM case: ``first`` recalls, another radiologist does not, ``arbitrator``
    arbitrates."""
    case = dicom_case_with_images(images=1)
    read_case(first, case.pk, recall=True)
    read_case(UserFactory(role="radiologist"), case.pk, recall=False)
    read_case(arbitrator, case.pk, recall=True)
    return case


@pytest.fixture
def objects(db, users):
    case = case_with_images(images=1, score=0.7)
    image = case.studies.get().images.get()
    dicom_study = dicom_case_with_images(images=1, score=0.6).studies.get()
    return {
        "wado": wado_kwargs(dicom_study),
        "dicom_study": dicom_study,
        "dicom_result": dicom_study.images.get().ai_results.get(),
        "case": case,
        "image": image,
        "heatmap": image.ai_results.get(),
        "model": ModelVersionFactory(),
        "closed_case": arbitrated(users[RAD], users[ARB]),
    }


def wado_kwargs(study) -> dict[str, dict[str, str]]:
    instance = StoredInstance.of(study.images.get())
    uids = {"study": study.study_instance_uid}
    series = {**uids, "series": instance.series_uid}
    one = {**series, "instance": instance.image.sop_instance_uid}
    return {
        "wado-study": uids,
        "wado-study-metadata": uids,
        "wado-series": series,
        "wado-series-metadata": series,
        "wado-instance": one,
        "wado-instance-metadata": one,
        "wado-frames": {**one, "frames": "1"},
    }


@pytest.fixture
def users(radiologist, admin_user, auditor, roleless):
    arbitrator = UserFactory(username="arbitrator", role="arbitrator")
    return {RAD: radiologist, ARB: arbitrator, ADMIN: admin_user, AUD: auditor, NONE: roleless}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method", "url", "expected"), MATRIX, ids=[m[0] for m in MATRIX])
def test_each_url_answers_each_role_with_its_status(
    client, users, objects, role, name, method, url, expected
):
    if role != ANON:
        client.force_login(users[role])
    response = getattr(client, method)(url(objects))
    assert response.status_code == expected[role], (name, role, response.content[:300])


def test_guessed_case_id_is_404_not_data(client, radiologist):
    client.force_login(radiologist)
    assert client.get(reverse("case-detail", args=[999999])).status_code == 404


def test_every_url_pattern_is_in_the_matrix(objects):
    """A new view without a row in the matrix fails here, so no endpoint escapes the role check."""
    from django.urls import get_resolver, resolve

    in_matrix = {resolve(url(objects).split("?")[0]).url_name for _, _, url, _ in MATRIX}
    routed = {n for n in get_resolver().reverse_dict if isinstance(n, str)}
    ours = {n for n in routed if not n.startswith("admin") and n != "logout"}
    assert ours - in_matrix == set()
    assert len({m[0] for m in MATRIX}) == len(MATRIX)
