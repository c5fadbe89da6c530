import time

from django.core.management.base import BaseCommand

from events.demo import demo_events
from events.models import Environment, Service, normalize_name
from events.services import capture_events, resolve_ids


class Command(BaseCommand):
    help = "Fill the database with realistic demo events (several services and environments, spread over days)."

    def add_arguments(self, parser):
        parser.add_argument("--bases", type=int, default=300)
        parser.add_argument("--occurrences", type=int, default=20000)
        parser.add_argument("--days", type=float, default=3)

    def handle(self, bases, occurrences, days, **options):
        if bases < 1 or occurrences < bases or not 0 < days <= 3650:  # refuses nan too
            self.stderr.write("need --bases >= 1, --occurrences >= --bases and --days above 0 and at most 3650")
            raise SystemExit(2)
        started = time.monotonic()
        events = demo_events(bases, occurrences, days)
        # Named by the operator who runs this, not made up by a client: created even when
        # EVENTSUM_AUTO_CREATE is off (the demo was a traceback of 1,000 "unknown service" errors then).
        for model, field in ((Service, "service"), (Environment, "environment")):
            names = {normalize_name(event[field]): event[field] for event in events}
            resolve_ids(model, names, always_created=tuple(names))
        for start in range(0, len(events), 1000):
            capture_events(events[start : start + 1000])  # the same path as /capture
        self.stdout.write(f"Captured {len(events)} demo events over {bases} bases in {time.monotonic() - started:.1f}s")
