"""Reading-room pages. Each view authorises, calls one action, renders."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from .. import errors, events, pathway
from ..ai import actions as ai_actions
from ..ai import queries as ai_queries
from ..ai.badges import Badge, ai_badge
from ..choices import RANKING_BANDS, AIStatus, CaseStatus, Decision, HangingProtocol, Role
from ..http import NO_STORE, conflict_page, paginate, private_file
from ..imaging import previews
from ..imaging.films import FileRejected
from ..imaging.pictures import display_png
from ..middleware import extend_session, session_expires_in
from ..models import AIResult, Case, Image, ReadDraft, Study, UnaidedOpinion
from ..roles import (
    CLINICAL_VIEWERS,
    READERS,
    AuthenticatedHttpRequest,
    Person,
    has_role,
    person,
    role_required,
)
from ..text import neutralise_bidi
from . import actions, assessment, drafts, hanging, queries
from .forms import (
    PolicyForm,
    ReadForm,
    WorklistFilterForm,
    seconds_since_opened,
    sign_opened,
)
from .worklist_pages import BadCursor


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if has_role(request.user, *READERS):
        return redirect("worklist")
    if has_role(request.user, Role.ADMIN):
        return redirect("upload")
    if has_role(request.user, Role.AUDITOR):
        return redirect("case-list")
    return render(request, "screening/no_role.html", status=HTTPStatus.FORBIDDEN)


@require_GET
@role_required(*READERS)
def worklist(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = WorklistFilterForm(request.GET or None)
    band_off = queries.band_filter_off()
    if band_off:
        del form.fields["band"]
        if request.GET.get("band", "") in RANKING_BANDS:
            messages.info(request, f"The risk filter is off. {band_off}")
    data = form.cleaned_data if form.is_valid() else {}
    flt = queries.WorklistFilter(status=data.get("status", ""), band=data.get("band", ""))
    try:
        page = queries.worklist_page(
            request.user, flt, request.GET.get("after", ""), request.GET.get("page", "")
        )
    except BadCursor as error:
        messages.warning(request, str(error))
        page = queries.worklist_page(request.user, flt)
    context = {
        "page": page,
        "rows": worklist_rows(page.object_list),
        "form": form,
        "active_version": ai_actions.active_model_version(),
        "filters": urlencode({k: v for k, v in data.items() if v}),
    }
    return render(request, "screening/worklist.html", context)


# A case under sequential reveal shows no AI on the worklist: its band would be the AI's
# opinion before the reader's own.
SEQUENTIAL_BADGE = Badge(
    "band-pending", "AI after your read", "Sequential reveal: the AI is shown once you record "
    "your unaided opinion on the case page.",
)  # fmt: skip


def worklist_rows(cases: list[Case]) -> list[dict[str, Any]]:
    """What each row shows, computed once here so the template only prints it."""
    states = ai_queries.case_ai_states(cases)
    template = reverse("case-detail", args=[0]).replace("/0/", "/{}/")
    now = timezone.now()
    return [
        {
            "pk": case.pk,
            "url": template.format(case.pk),
            "patient": neutralise_bidi(str(case.patient)),
            "synthetic": case.is_synthetic,
            "badge": asdict(
                SEQUENTIAL_BADGE if queries.reveals_later(case) else ai_badge(case, states[case.pk])
            ),
            "ai_normal": case.ai_normal and not queries.reveals_later(case),
            "state": f"{case.status}:{states[case.pk]}",
            "status": case.status,
            "status_label": case.get_status_display(),
            "received_at": timezone.localtime(case.received_at).strftime("%Y-%m-%d %H:%M"),
            "waiting": waiting_for(now - case.received_at),
        }
        for case in cases
    ]


WAITING_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60))


def waiting_for(delta: dt.timedelta) -> str:
    """ "2 days, 3 hours": the largest unit and the next one if not zero, as ``timesince``
    words it (in days, not months), at a fraction of its cost per row."""
    seconds = max(int(delta.total_seconds()), 0)
    for index, (name, size) in enumerate(WAITING_UNITS):
        if seconds < size:
            continue
        amount, rest = divmod(seconds, size)
        text = _units(amount, name)
        if index + 1 < len(WAITING_UNITS):
            next_name, next_size = WAITING_UNITS[index + 1]
            if rest // next_size:
                text += ", " + _units(rest // next_size, next_name)
        return text
    return "0\u00a0minutes"


def _units(amount: int, name: str) -> str:
    return f"{amount}\u00a0{name}" if amount == 1 else f"{amount}\u00a0{name}s"


@require_GET
@role_required(Role.AUDITOR)
def case_list(request: HttpRequest) -> HttpResponse:
    form = WorklistFilterForm(request.GET or None)
    cases = Case.objects.select_related("patient", "ai_result__model_version").order_by(
        "-received_at", "-pk"
    )
    if form.is_valid() and form.cleaned_data.get("status"):
        cases = cases.filter(status=form.cleaned_data["status"])
    page = paginate(request, cases, settings.WORKLIST_PAGE_SIZE)
    return render(request, "screening/case_list.html", {"page": page, "form": form})


@require_GET
@role_required(*CLINICAL_VIEWERS)
def case_detail(request: AuthenticatedHttpRequest, case_id: int) -> HttpResponse:
    case = _case_or_404(case_id)
    events.case_opened(request.user, case, via="page")
    drafts.take(request.session, request.user, case.pk)
    draft = queries.draft(request.user, case)
    kind = pathway.expected_kind(case.status) or ""
    opinion = actions.pending_opinion(request.user, case, kind) if kind else None
    kept = opinion.fields if opinion else (draft.fields if draft else {})
    form = ReadForm(initial={**kept, **_read_initial(case, request.user)})
    return _render_case(request, case, form, restored=draft)


@require_POST
@login_not_required  # answers 401 itself: the page must learn that the session ended
def case_draft(request: HttpRequest, case_id: int) -> JsonResponse:
    """Keep the read in progress as the reader types (their own, seen by nobody else)."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Signed out."}, status=HTTPStatus.UNAUTHORIZED)
    return _save_draft(request, case_id)


@role_required(*READERS)
def _save_draft(request: AuthenticatedHttpRequest, case_id: int) -> JsonResponse:
    try:
        fields = ReadForm().draft(request.POST)
    except ValidationError as error:
        return JsonResponse({"detail": " ".join(error.messages)}, status=HTTPStatus.BAD_REQUEST)
    try:
        kept = actions.save_draft(request.user, case_id, fields)
    except errors.DomainError as error:
        return JsonResponse({"detail": error.message}, status=error.status)
    if not kept:
        detail = "This case no longer takes your read; nothing was kept."
        return JsonResponse({"detail": detail}, status=HTTPStatus.CONFLICT)
    return JsonResponse({"kept": bool(fields), **_session_left(request)})


@require_POST
@login_not_required  # answers 401 itself, as the draft does
def stay_signed_in(request: HttpRequest) -> JsonResponse:
    """The case page's "Stay signed in": the idle timeout starts again from now."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Signed out."}, status=HTTPStatus.UNAUTHORIZED)
    extend_session(request.session)
    return JsonResponse(_session_left(request))


def _session_left(request: HttpRequest) -> dict[str, int]:
    return {"expires_in": session_expires_in(request.session)}


@require_POST
@login_not_required  # a read sent after sign-out is kept, never bounced to a GET (405)
def case_read(request: HttpRequest, case_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return _read_after_signout(request, case_id)
    return _record_read(request, case_id)


def _read_after_signout(request: HttpRequest, case_id: int) -> HttpResponse:
    """The session ended before the read arrived: hold it, and after sign-in go back to the
    case (not to this POST-only address), where it is put back as the reader left it."""
    kept = drafts.keep(request.session, case_id, request.POST)
    messages.warning(request, SIGNED_OUT_KEPT if kept else SIGNED_OUT)
    return redirect_to_login(reverse("case-detail", args=[case_id]))


SIGNED_OUT_KEPT = (
    "Your session ended before your read was recorded: it is not recorded yet, and it is "
    "kept. Sign in to go back to the case, with your read as you left it."
)
SIGNED_OUT = "Your session ended, so nothing was recorded. Sign in to go back to the case."
DRAFT_RESTORED = "Your unsaved read was kept: check it and record it."


@role_required(*READERS)
def _record_read(request: AuthenticatedHttpRequest, case_id: int) -> HttpResponse:
    case = _case_or_404(case_id)
    form = ReadForm(request.POST)
    if not form.is_valid():
        return _render_case(request, case, form, status=HTTPStatus.BAD_REQUEST)
    data = form.cleaned_data
    read_input = actions.ReadInput(
        kind=data["kind"],
        decision=data["decision"],
        birads_right=data["birads_right"],
        birads_left=data["birads_left"],
        density=data["density"],
        findings=form.findings(),
        reason=data["reason"],
        seconds_taken=seconds_since_opened(data["opened"], case.pk),
    )
    try:
        read = actions.submit_read(request.user, case.pk, read_input)
        if isinstance(read, UnaidedOpinion):
            messages.info(request, pathway.revision_prompt(read.trigger))
            return redirect("case-detail", case_id=case.pk)
    except errors.Conflict as conflict:
        back = reverse("case-detail", args=[case.pk])
        return conflict_page(request, conflict.message, back, f"Reopen case {case.pk}")
    except errors.DomainError as error:
        form.add_error(None, error.message)
        return _render_case(request, _case_or_404(case_id), form, status=error.status)
    messages.success(
        request,
        f"Read recorded for case {case.pk}: {read.get_kind_display().lower()}, "
        f"{read.get_decision_display().lower()}, {read.assessment}.",
    )
    following = queries.next_case(request.user, after=case)
    if following and queries.reader_settings(request.user).open_next_after_read:
        return redirect("case-detail", case_id=following.pk)
    return redirect("case-detail", case_id=case.pk)


@require_POST
@role_required(*READERS)
def reading_settings(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The reader's own settings, kept for them on the server: whether the next case opens
    after a read, and the hanging protocol case pages open in; each changed only when sent.
    The viewer saves the protocol without leaving the case, and is answered in JSON."""
    protocol = request.POST.get("hanging_protocol")
    if protocol is not None and protocol not in HangingProtocol.values:
        return JsonResponse({"detail": "No such hanging protocol."}, status=HTTPStatus.BAD_REQUEST)
    if "open_next" in request.POST:
        actions.set_open_next(request.user, request.POST["open_next"] == "on")
    if protocol is not None:
        actions.set_hanging_protocol(request.user, HangingProtocol(protocol))
    if request.headers.get("Accept") == "application/json":
        return JsonResponse(
            {"hanging_protocol": queries.reader_settings(request.user).hanging_protocol}
        )
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("worklist")
    return redirect(back)


@require_GET
@role_required(*CLINICAL_VIEWERS)
def case_ai_panel(request: AuthenticatedHttpRequest, case_id: int) -> JsonResponse:
    """The AI parts of the case page, so a result that arrives is shown without a reload
    (a reload would lose the reader's zoom and the categories they chose)."""
    case = _case_or_404(case_id)
    hidden = queries.ai_hidden_from(request.user, case)
    results = {} if hidden else ai_queries.case_ai_results(case)
    context = {"case": case, "ai_recall": "" if hidden else _ai_recall(case), "ai_hidden": hidden}
    return JsonResponse(
        {
            "ai_status": case.ai_result.status if case.ai_result else "pending",
            "case_status": case.status,  # "Awaiting AI" moves on as the result arrives
            "case_status_label": case.get_status_display(),
            "ai_recall": context["ai_recall"],
            "ai_box": render_to_string("screening/_ai_box.html", context, request),
            "decision_buttons": render_to_string(
                "screening/_decision_buttons.html", context, request
            ),
            "images": {
                str(image_id): _image_ai_panel(request, r) for image_id, r in results.items()
            },
        }
    )


def _image_ai_panel(request: HttpRequest, result: AIResult) -> dict[str, str]:
    """One film's heatmap URL, marks and caption; heatmap and marks only where the
    version's evidence lets them be shown."""
    marks = result.shown_marks
    return {
        "heatmap": reverse("heatmap-file", args=[result.pk]) if result.shows_heatmap else "",
        "marks": render_to_string(
            "screening/_marks.html", {"image": result.image, "marks": marks}, request
        )
        if marks
        else "",
        "caption": result.caption,
    }


@require_GET
@role_required(*CLINICAL_VIEWERS)
def image_file(request: HttpRequest, image_id: int) -> HttpResponseBase:
    image = get_object_or_404(Image, pk=image_id)
    if image.bit_depth <= 8 and not image.is_dicom:
        return private_file(image.file)
    try:
        with image.file.open("rb") as handle:
            content = display_png(handle.read())
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    except FileRejected as refusal:  # stored before upload refused such films (e.g. blank)
        raise Http404(f"This image cannot be shown. {refusal.message}") from None
    response = HttpResponse(content, content_type="image/png")
    response["Cache-Control"] = NO_STORE
    return response


@require_GET
@role_required(*CLINICAL_VIEWERS)
def image_preview(request: HttpRequest, image_id: int) -> HttpResponseBase:
    """The film's small picture the case page paints at once (``screening.imaging.previews``);
    the same roles as the film itself, and kept out of shared caches as it is."""
    image = get_object_or_404(Image, pk=image_id)
    try:
        content = previews.preview(image)
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    except FileRejected as refusal:
        raise Http404(f"This image cannot be shown. {refusal.message}") from None
    response = HttpResponse(content, content_type="image/jpeg")
    response["Cache-Control"] = NO_STORE
    return response


def _case_or_404(case_id: int) -> Case:
    return get_object_or_404(
        Case.objects.select_related("patient", "ai_result__model_version"), pk=case_id
    )


def _read_initial(case: Case, reader: User) -> dict:
    """What the reader did not choose: which read this is, when and by whom it was opened."""
    return {
        "opened": sign_opened(case.pk, reader.pk),
        "kind": pathway.expected_kind(case.status) or "",
    }


def _ai_recall(case: Case) -> str:
    """The AI's suggestion the decision buttons confirm ('' while there is none)."""
    suggests = case.ai_recommends_recall if case.ai_result else None
    if suggests is None or case.ai_result is None or case.ai_result.status != AIStatus.DONE:
        return ""  # no result yet, or a version not validated for triage suggests nothing
    return Decision.RECALL if suggests else Decision.NO_RECALL


def _render_case(
    request: AuthenticatedHttpRequest,
    case: Case,
    form: ReadForm,
    status: int = HTTPStatus.OK,
    restored: ReadDraft | None = None,
) -> HttpResponse:
    hidden = queries.ai_hidden_from(request.user, case)
    results = {} if hidden else ai_queries.case_ai_results(case)
    images = [
        (image, results.get(image.pk))
        for image in Image.objects.filter(study__case=case).select_related("study")
    ]
    priors = sorted(
        [
            *(_prior(request, prior) for prior in queries.priors(case)),
            *(_history(study) for study in queries.prior_studies(case)),
        ],
        key=lambda prior: prior["date"] or dt.date.min,
        reverse=True,
    )
    me = person(request.user)
    given = queries.given_reads(case)
    reads = queries.visible_reads(request.user, case)
    is_reader = bool(me.roles & pathway.READER_ROLES)
    can_read = pathway.may_read(me, case.status, given)
    studies = list(case.studies.all())
    kind = pathway.expected_kind(case.status) or ""
    opinion = actions.pending_opinion(request.user, case, kind) if can_read and kind else None
    own = queries.reader_settings(request.user)
    context = {
        "policy": case.policy,
        "route": case.get_route_display() if case.route else "",
        "ai_hidden": hidden,
        "opinion": opinion,
        "revision_prompt": pathway.revision_prompt(opinion.trigger) if opinion else "",
        "case": case,
        "images": images,
        "panels": hanging.hang(images),
        "overlay_drawable": ai_queries.overlay_drawable(results.values()),
        "ai_awaited": not hidden and ai_queries.ai_awaited(case),
        "priors": priors,
        "compared": _compared(request, priors),
        "next_case": queries.next_case(request.user, after=case) if is_reader else None,
        "studies": studies,
        # Clinical mode: the woman's name, ID and age for her readers (never in a URL or log).
        "identities": queries.identities(studies) if is_reader else [],
        # The readers' report leaves only once the case is closed, to its readers and auditors.
        "read_report": pathway.may_take_report(me, case.status, given)
        and any(study.is_dicom for study in studies),
        "reads": reads,
        "film_marks": queries.film_marks(reads),
        "my_reads": [read for read in reads if read.reader_id == me.id],
        "other_reads_shown": any(read.reader_id != me.id for read in reads),
        "others_reads_hidden": len(reads) < len(given),
        "form": form,
        "can_read": can_read,
        "draft_restored": bool(restored and can_read),
        # When the server's draft was saved (ms), for the page to tell which copy is newer.
        "draft_at": int(restored.updated_at.timestamp() * 1000) if restored else 0,
        "draft_note": DRAFT_RESTORED,
        "session_timer": {
            "expires_in": session_expires_in(request.session),
            "warn": settings.SESSION_WARN_SECONDS,
        },
        "read_kind": pathway.expected_kind(case.status),
        "read_rules": assessment.browser_rules(),
        "open_next": own.open_next_after_read,
        "hanging_rules": hanging.viewer_rules(own.hanging_protocol),
        "ai_recall": "" if hidden else _ai_recall(case),
        "arbitration_note": _arbitration_note(case, me, given),
    }
    return render(request, "screening/case_detail.html", context, status=status)


def _compared(request: AuthenticatedHttpRequest, priors: list[dict]) -> dict | None:
    """The prior hung beside the current films: the one the reader picked from the list
    (``?prior=<key>``: an earlier screen's case id, or ``study-<id>`` for a prior study),
    else the latest."""
    chosen = request.GET.get("prior", "")
    picked = [p for p in priors if p["key"] == chosen]
    return next(iter(picked or priors), None)


def _prior(request: AuthenticatedHttpRequest, prior: Case) -> dict:
    """An earlier screen of the same woman: its films, and of its reads and outcome only
    what the reading pathway lets this user see (a prior still open stays blind)."""
    films = Image.objects.filter(study__case=prior).select_related("study")
    return {
        "key": str(prior.pk),  # the panels' data-case, the viewer's data-compare-case
        "case": prior,
        "date": min((image.study.study_date for image in films), default=None),
        "panels": hanging.hang((image, None) for image in films),
        "reads": queries.visible_reads(request.user, prior),
        "closed": prior.status == CaseStatus.CLOSED,
    }


def _history(study: Study) -> dict:
    """A prior study of the same woman (history, no case): its films to compare with, no
    reads and no AI (it is never read or scored here)."""
    films = list(study.images.all())
    for image in films:
        image.study = study  # the panels read its UID: no query per film
    return {
        "key": f"study-{study.pk}",
        "case": None,
        "study": study,
        "date": study.study_date,
        "panels": hanging.hang((image, None) for image in films),
        "reads": [],
        "closed": False,
    }


def _arbitration_note(case: Case, me: Person, given: list) -> str:
    if case.status != CaseStatus.ARBITRATION or not pathway.has_read(me, given):
        return ""
    return pathway.waiting_for_arbitration_note(queries.eligible_arbitrators(case))


@role_required(Role.ADMIN)
def reading_policy(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The site's reading policy: the one in force, its history, and (admin) a new version."""
    in_force = queries.policy_in_force()
    initial = {"policy": in_force.policy, "ai_reveal": in_force.ai_reveal} if in_force else {}
    form = PolicyForm(request.POST or None, initial=initial)
    status = HTTPStatus.OK
    if request.method == "POST" and form.is_valid():
        try:
            chosen = actions.set_policy(request.user, **form.cleaned_data)
        except errors.DomainError as error:
            form.add_error(None, error.message)
            status = HTTPStatus.BAD_REQUEST
        else:
            messages.success(request, f"Reading policy set: {chosen}.")
            return redirect("reading-policy")
    elif request.method == "POST":
        status = HTTPStatus.BAD_REQUEST
    context = {
        "form": form,
        "in_force": in_force,
        "history": queries.policies(),
    }
    return render(request, "screening/reading_policy.html", context, status=status)
