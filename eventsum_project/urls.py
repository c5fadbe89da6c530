from django.contrib import admin
from django.urls import path, re_path

from events import views

handler400 = "events.errors.bad_request"
handler403 = "events.errors.permission_denied"
handler404 = "events.errors.not_found"
handler500 = "events.errors.server_error"


def api(route: str, view, name: str):
    """Every API path answers with and without a trailing slash, without redirects."""
    return re_path(rf"^{route}/?$", view, name=name)


urlpatterns = [
    api("capture", views.CaptureView.as_view(), "capture"),
    path("admin/", admin.site.urls),
]
