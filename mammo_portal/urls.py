from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from screening import account_views
from screening.ai.views import evidence, queue, status, versions
from screening.audit import drift_views, local_views, simulation_views
from screening.audit import views as audit
from screening.intake import views as manage
from screening.interop import dicomweb, wado
from screening.interop import views as exports
from screening.ops import views as ops
from screening.reading import views as pages

# The database down (503) and the storage full (507) answer as such, not as a bare 500.
handler500 = "screening.ops.faults.server_error"

urlpatterns = [
    path("", pages.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", account_views.account, name="account"),
    path("worklist/", pages.worklist, name="worklist"),
    path("cases/", pages.case_list, name="case-list"),
    path("cases/<int:case_id>/", pages.case_detail, name="case-detail"),
    path("cases/<int:case_id>/read/", pages.case_read, name="case-read"),
    path("cases/<int:case_id>/draft/", pages.case_draft, name="case-draft"),
    path("session/stay/", pages.stay_signed_in, name="stay-signed-in"),
    path("reading/settings/", pages.reading_settings, name="reading-settings"),
    path("reading/policy/", pages.reading_policy, name="reading-policy"),
    path("cases/<int:case_id>/ai-panel/", pages.case_ai_panel, name="case-ai-panel"),
    path("cases/<int:case_id>/ai-status/", status.case_ai_status, name="case-ai-status"),
    path("worklist/ai-status/", status.worklist_ai_status, name="worklist-ai-status"),
    path("queue/", queue.queue, name="ai-queue"),
    path("ai-results/<int:result_id>/retry/", queue.retry, name="ai-retry"),
    path("images/<int:image_id>/file/", pages.image_file, name="image-file"),
    path("images/<int:image_id>/preview/", pages.image_preview, name="image-preview"),
    path("ai-results/<int:result_id>/heatmap/", evidence.heatmap_file, name="heatmap-file"),
    path("ai-results/<int:result_id>/heatmap.dcm", exports.heatmap_dicom, name="heatmap-dicom"),
    path("studies/<int:study_id>/ai-report.dcm", exports.study_ai_report, name="study-ai-report"),
    path("cases/<int:case_id>/read-report.dcm", exports.case_read_report, name="case-read-report"),
    path("pacs/deliveries/", exports.pacs_deliveries, name="pacs-deliveries"),
    path(
        "cases/<int:case_id>/pacs-deliveries/",
        exports.case_pacs_deliveries,
        name="case-pacs-deliveries",
    ),
    path(
        "cases/<int:case_id>/pacs-deliveries/<int:delivery_id>/send-now/",
        exports.send_delivery_now,
        name="case-pacs-delivery-send-now",
    ),
    path("audit/", audit.audit_trail, name="audit-trail"),
    path("audit/export/", audit.export_audit_trail, name="audit-trail-export"),
    path("reports/", audit.dashboard, name="audit-dashboard"),
    path("reports/discordant/", audit.discordant, name="audit-discordant"),
    path("reports/local/", local_views.local_validation_page, name="audit-local"),
    path(
        "models/<int:version_id>/triage/propose/",
        local_views.triage_propose,
        name="triage-propose",
    ),
    path(
        "triage-proposals/<int:proposal_id>/confirm/",
        local_views.triage_confirm,
        name="triage-confirm",
    ),
    path("models/<int:version_id>/triage/off/", local_views.triage_off, name="triage-off"),
    path("reports/drift/", drift_views.drift_page, name="audit-drift"),
    path("reports/simulate/", simulation_views.simulate_page, name="audit-simulate"),
    path(
        "reports/simulate/export/",
        simulation_views.export_simulation,
        name="audit-simulate-export",
    ),
    path("reports/export/<slug:table>/", audit.export_report, name="audit-export"),
    path("upload/", manage.upload, name="upload"),
    path("studies/", manage.study_list, name="study-list"),
    path("models/", versions.model_versions, name="model-versions"),
    path("models/<int:version_id>/activate/", versions.activate_model, name="model-activate"),
    path(
        "models/<int:version_id>/silent-trial/start/",
        versions.silent_trial,
        {"verb": "start"},
        name="model-silent-trial-start",
    ),
    path(
        "models/<int:version_id>/silent-trial/stop/",
        versions.silent_trial,
        {"verb": "stop"},
        name="model-silent-trial-stop",
    ),
    path("api/", include("mammo_portal.api_urls")),
    path("dicomweb/studies", dicomweb.StudiesView.as_view(), name="dicomweb-studies"),
    path("dicomweb/", include(wado.urlpatterns)),
    path("admin/", admin.site.urls),
    path("favicon.ico", ops.favicon, name="favicon"),
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics_view, name="metrics"),
]
