import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eventsum_project.settings")
application = get_wsgi_application()

# Import every view now (the URLconf loads lazily), then keep all that start-up made (~60,000 objects:
# modules, classes, settings) out of the garbage collector's full passes, which walked it all each time:
# ~20 ms per pass, a pause every request queued behind it waited out.
get_resolver().url_patterns  # noqa: B018 - evaluated for its import side effect
gc.freeze()
