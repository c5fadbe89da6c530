"""The admin site (Django's default site, through events.apps.EventsumAdminConfig): titles, and action selections
checked before any admin reads them."""

from functools import wraps

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import JsonResponse

from events.models import MAX_ID


class EventsumAdminSite(admin.AdminSite):
    site_header = "Eventsum"
    site_title = "Eventsum"
    index_title = "Triage"

    def admin_view(self, view, cacheable=False):
        return super().admin_view(_selection_checked(view), cacheable)


def _selection_checked(view):
    """An action's selected rows must be ids. Every model in this admin has integer ids (the tokens' page
    selects its users' ids), and Django filters by the posted values unchecked: "abc" was a 500."""

    @wraps(view)
    def checked(request, *args, **kwargs):
        if request.method == "POST":
            if wrong := [value for value in request.POST.getlist(ACTION_CHECKBOX_NAME) if not _an_id(value)]:
                shown = ", ".join(map(repr, wrong[:5]))
                return JsonResponse({ACTION_CHECKBOX_NAME: [f"Not row ids: {shown}."]}, status=400)
        return view(request, *args, **kwargs)

    return checked


def _an_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and int(value) <= MAX_ID
