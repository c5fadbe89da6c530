import gc
import io
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eventsum_project.settings")
django_application = get_wsgi_application()

from events.capture import capture_application, takes  # noqa: E402 - needs the settings above


def application(environ, start_response):
    # Django reads a body only as far as Content-Length says, so a chunked one (which the server has
    # de-chunked) would read as empty on every endpoint. Read it here, one byte past the body limit so
    # the usual checks still answer 413 for a larger one.
    if "CONTENT_LENGTH" not in environ and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        body = environ["wsgi.input"].read(settings.EVENTSUM_MAX_BODY_BYTES + 1)
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
    # POST /capture, the hot path, is answered without Django's handler (events.capture).
    if takes(environ):
        return capture_application(environ, start_response)
    return django_application(environ, start_response)


# Import every view now (the URLconf loads lazily), then keep all that start-up made (~60,000 objects:
# modules, classes, settings) out of the garbage collector's full passes, which walked it all each time:
# ~20 ms per pass, a pause every request queued behind it waited out.
get_resolver().url_patterns  # noqa: B018 - evaluated for its import side effect
gc.freeze()
