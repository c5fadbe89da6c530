"""Who may do what (SPEC section 4)."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission

TRIAGE_PERMISSIONS = ("events.change_eventbase", "events.change_eventgroup")


class CanRead(BasePermission):
    """Reads need an authenticated user unless EVENTSUM_PUBLIC_READ=true."""

    def has_permission(self, request, view) -> bool:
        return settings.EVENTSUM_PUBLIC_READ or bool(request.user and request.user.is_authenticated)


class CanTriage(BasePermission):
    """Triage needs the change permission on event bases or on groups; unauthenticated is a 401."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return any(user.has_perm(permission) for permission in TRIAGE_PERMISSIONS)


class CanReadOrTriage(BasePermission):
    """Reads as CanRead, writes as CanTriage: the /groups resource."""

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return CanRead().has_permission(request, view)
        return CanTriage().has_permission(request, view)
