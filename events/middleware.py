"""Middleware of our own that isn't about errors (events.errors) or observability (events.observability)."""

from django.contrib.messages.middleware import MessageMiddleware


class AdminMessageMiddleware(MessageMiddleware):
    """Flash messages are the admin's alone: API requests skip setting up their storage (cookie and
    session backends), a measurable share of a small request's time."""

    def process_request(self, request):
        if request.path_info.startswith("/admin/"):
            super().process_request(request)
