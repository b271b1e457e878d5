from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.include_root_view = False
router.register("cases", views.CaseViewSet, basename="api-case")
router.register("studies", views.StudyUploadViewSet, basename="api-study")
router.register("model-versions", views.ModelVersionViewSet, basename="api-model-version")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("outcomes/", views.OutcomeView.as_view(), name="api-outcome"),
    path("images/<int:pk>/file/", views.ImageFileView.as_view(), name="api-image-file"),
    path("ai-results/<int:pk>/heatmap/", views.HeatmapFileView.as_view(), name="api-heatmap-file"),
    path(
        "ai-results/<int:pk>/secondary-capture/",
        views.HeatmapDicomView.as_view(),
        name="api-heatmap-dicom",
    ),
    path(
        "studies/<int:pk>/ai-report/", views.StudyAIReportView.as_view(), name="api-study-ai-report"
    ),
    path("", include(router.urls)),
    # Last: what nothing above matched. Only paths ending in a slash, so a missing slash is
    # still redirected (APPEND_SLASH) to the endpoint it names.
    re_path(r"^.*/$", views.UnknownEndpointView.as_view()),
]
