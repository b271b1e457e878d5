"""The REST API's routes: each capability's endpoints under /api/ (the project wires them;
``screening.api`` holds only what they share: authentication, paging, refusals)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from screening.ai import api as ai
from screening.api.common import SchemaNegotiation, UnknownEndpointView
from screening.audit import api as audit
from screening.intake import api as intake
from screening.interop import api as interop
from screening.reading import api as reading

router = DefaultRouter()
router.include_root_view = False
router.register("cases", reading.CaseViewSet, basename="api-case")
router.register("policies", reading.PolicyViewSet, basename="api-policy")
router.register("studies", intake.StudyUploadViewSet, basename="api-study")
router.register("model-versions", ai.ModelVersionViewSet, basename="api-model-version")

urlpatterns = [
    path(
        "schema/",
        SpectacularAPIView.as_view(content_negotiation_class=SchemaNegotiation),
        name="api-schema",
    ),
    path("outcomes/", audit.OutcomeView.as_view(), name="api-outcome"),
    path("images/<int:pk>/file/", reading.ImageFileView.as_view(), name="api-image-file"),
    path("ai-results/<int:pk>/heatmap/", ai.HeatmapFileView.as_view(), name="api-heatmap-file"),
    path(
        "ai-results/<int:pk>/secondary-capture/",
        interop.HeatmapDicomView.as_view(),
        name="api-heatmap-dicom",
    ),
    path(
        "studies/<int:pk>/ai-report/",
        interop.StudyAIReportView.as_view(),
        name="api-study-ai-report",
    ),
    path(
        "model-versions/<int:pk>/scores/",
        ai.VersionScoresView.as_view(),
        name="api-model-version-scores",
    ),
    path(
        "cases/<int:pk>/read-report/",
        interop.CaseReadReportView.as_view(),
        name="api-case-read-report",
    ),
    path(
        "cases/<int:pk>/pacs-deliveries/",
        interop.CaseSendStatusView.as_view(),
        name="api-case-pacs-deliveries",
    ),
    path("", include(router.urls)),
    # Last: what nothing above matched. Only paths ending in a slash, so a missing slash is
    # still redirected (APPEND_SLASH) to the endpoint it names.
    re_path(r"^.*/$", UnknownEndpointView.as_view()),
]
