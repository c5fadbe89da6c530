from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularJSONAPIView
from rest_framework.routers import SimpleRouter

from events import views

handler400 = "events.errors.bad_request"
handler403 = "events.errors.permission_denied"
handler404 = "events.errors.not_found"
handler500 = "events.errors.server_error"


def api(route: str, view, name: str):
    """Every API path answers with and without a trailing slash, without redirects."""
    return re_path(rf"^{route}/?$", view, name=name)


class OptionalSlashRouter(SimpleRouter):
    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("groups", views.EventGroupViewSet, basename="group")

urlpatterns = [
    api("capture", views.CaptureView.as_view(), "capture"),
    api("search", views.SearchView.as_view(), "search"),
    api("detail", views.DetailView.as_view(), "detail"),
    api("assign_group", views.AssignGroupView.as_view(), "assign-group"),
    api("services", views.ServiceListView.as_view(), "services"),
    api("environments", views.EnvironmentListView.as_view(), "environments"),
    api("schema", SpectacularJSONAPIView.as_view(), "schema"),
    api("health", views.HealthView.as_view(), "health"),
    api("metrics", views.MetricsView.as_view(), "metrics"),
    path("", include(router.urls)),
    path("admin/", admin.site.urls),
]
