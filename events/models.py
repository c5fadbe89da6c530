import re
from functools import lru_cache

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Func, Value

from grouping.hashing import canonical_hash
from grouping.pipeline import NORMALIZATION_VERSION, normalize

DEFAULT_GROUP_ID = 0
MAX_ID = 2**63 - 1  # every id is a bigint: a larger one names no row, and PostgreSQL refuses it
_NAME_SEPARATORS = re.compile(r"[\s\-]+")


@lru_cache(maxsize=4096)
def normalize_name(name: str) -> str:
    """Trim, lower-case, runs of spaces and hyphens become one `_`: "Wish-FE" and "WISH FE" are one service."""
    return _NAME_SEPARATORS.sub("_", name.strip().lower())


class NamedEntity(models.Model):
    name = models.CharField(max_length=200, help_text="Display name: the first form seen.")
    normalized_name = models.CharField(max_length=200, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["normalized_name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.normalized_name = normalize_name(self.name)
        super().save(*args, **kwargs)


class Service(NamedEntity):
    pass


class Environment(NamedEntity):
    pass


class EventGroup(models.Model):
    """A triage bucket. Group 0, `default`, is created by a migration and can be neither deleted nor renamed."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_default(self) -> bool:
        return self.pk == DEFAULT_GROUP_ID


class EventBase(models.Model):
    """One "issue": every occurrence whose data normalizes to the same processed data."""

    # db_index=False on foreign keys that lead a composite index already: every index is written on each
    # capture that moves a row, and those single-column copies served no query the composite doesn't.
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="event_bases", db_index=False)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="event_bases")
    event_type = models.CharField(max_length=1024)
    event_name = models.CharField(max_length=1024)
    processed_data = models.JSONField()
    processed_data_hash = models.CharField(max_length=64)
    normalization_version = models.PositiveSmallIntegerField(default=NORMALIZATION_VERSION)
    event_group = models.ForeignKey(
        EventGroup, on_delete=models.SET_DEFAULT, default=DEFAULT_GROUP_ID, related_name="event_bases", db_index=False
    )
    latest_message = models.TextField(blank=True, default="")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    # The recency indexes hold the hour of last_seen, not last_seen: every capture moves its base's
    # last_seen, and an update that changes no indexed value is HOT (no index written), so a base's
    # indexes are written once an hour instead of on every capture. Lists order by (last_seen_hour,
    # last_seen), which PostgreSQL reads from these indexes with an incremental sort.
    # Truncated as UTC wall-clock time and turned back into an instant: PostgreSQL 14 and 15 hold the
    # three-argument date_trunc(unit, timestamptz, zone) as not immutable, which a generated column refuses.
    last_seen_hour = models.GeneratedField(
        expression=Func(
            Value("UTC"),
            Func(Value("hour"), Func(Value("UTC"), "last_seen", function="timezone"), function="date_trunc"),
            function="timezone",
        ),
        output_field=models.DateTimeField(),
        db_persist=True,
    )
    # Kept by the capture statement and by pruning: the sum of the base's buckets (and of its instances'
    # totals), so a list of bases reads its rows alone, whatever number of instances each has.
    total_count = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["service", "environment", "event_type", "event_name", "processed_data_hash"],
                name="eventbase_identity",
            ),
        ]
        # A filter on the service, or on the service and environment, uses the identity constraint's index.
        indexes = [
            models.Index(fields=["-last_seen_hour"], name="eventbase_recent"),
            models.Index(fields=["service", "-last_seen_hour"], name="eventbase_service_recent"),  # admin filter
            models.Index(fields=["processed_data_hash"], name="eventbase_hash"),
            models.Index(fields=["event_group", "-last_seen_hour"], name="eventbase_group"),
            models.Index(fields=["event_type"], name="eventbase_type"),  # the admin's type filter
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_name} #{self.pk}"

    def save(self, *args, **kwargs):
        # Only same-row derived fields here; group assignment and counting live in events.services.
        self.processed_data_hash = canonical_hash(self.processed_data)
        super().save(*args, **kwargs)


class EventBaseSearch(models.Model):
    """What `keywords` searches for one base, in a table of its own: a base row is rewritten on every
    capture (last_seen), and keeping the GIN index off that table spares each capture its upkeep.
    """

    event_base = models.OneToOneField(EventBase, on_delete=models.CASCADE, primary_key=True, related_name="search")
    # Lower-cased type, name, frame functions, modules and filenames: set when the base is created.
    static_text = models.TextField()
    # Lower-cased distinct messages seen, appended (bounded, so messages with ids in them can't grow it forever).
    messages_text = models.TextField()
    # The distinct three-character pieces of the words of both texts, behind a GIN index: a keyword's
    # pieces must all be here before the texts are compared. Works on any PostgreSQL (no pg_trgm needed).
    trigrams = ArrayField(models.CharField(max_length=3))

    class Meta:
        indexes = [GinIndex(fields=["trigrams"], name="eventbasesearch_trigrams")]

    def __str__(self) -> str:
        return f"search text of base #{self.event_base_id}"


class JSONTextField(models.JSONField):
    """A JSONField stored as PostgreSQL's `json`, the text as written, instead of `jsonb`. For an instance's
    latest raw data and details: every capture rewrites them and they are only ever read whole, never
    searched inside, so jsonb's parse into its binary form (and its larger size to compress and write)
    bought nothing. PostgreSQL's CPU per capture: 0.87 -> 0.72 ms for single events, 20.4 -> 17.7 ms for
    arrays of 100 (bench/RESULTS.md). A capture's text is kept as sent, key order included (the ORM writes
    through jsonb, which sorts the keys); json has no equality operator, so these columns can't be
    filtered on by value."""

    def db_type(self, connection):
        return "json"


class EventInstance(models.Model):
    """One concrete variant of a base (same processed stack; different line numbers, vars, ...)."""

    event_base = models.ForeignKey(EventBase, on_delete=models.CASCADE, related_name="instances", db_index=False)
    generic_data = models.JSONField()
    generic_data_hash = models.CharField(max_length=64)
    filters = models.JSONField(default=dict, help_text="The configurable_filters the latest occurrence named.")
    raw_data = JSONTextField(help_text="The event_data of the latest occurrence.")
    raw_details = JSONTextField(default=dict, help_text="The extra_args of the latest occurrence.")
    processed_details = JSONTextField(default=dict)
    latest_message = models.TextField(blank=True, default="")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    # Kept by the capture statement and by pruning: the sum of the instance's buckets' counts, so /detail and
    # the admin read one row, not every bucket of a busy instance's history.
    total_count = models.BigIntegerField(default=0, db_default=0)
    # Whether any occurrence brought grouping counters: /detail sums the buckets' counters only then. The sum
    # itself is not kept here: a grouping like count_by_message has a key per distinct message, so an
    # instance's all-time counters would grow without bound, and be rewritten by every capture.
    has_counters = models.BooleanField(default=False, db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_base", "generic_data_hash"], name="eventinstance_identity"),
        ]
        # No index on last_seen: every capture moves it, and an indexed column would stop PostgreSQL from
        # updating the row in place (HOT). Lists of instances are ordered by id.

    def __str__(self) -> str:
        return f"instance #{self.pk} of base #{self.event_base_id}"

    def save(self, *args, **kwargs):
        # Same pure function as the capture path, so an instance made through the ORM agrees with one captured.
        normalized = normalize(self.raw_data, self.raw_details, self.filters)
        self.generic_data = normalized.generic_data
        self.generic_data_hash = normalized.generic_data_hash
        self.processed_details = normalized.processed_details
        self.latest_message = normalized.message
        super().save(*args, **kwargs)


class OccurrenceBucket(models.Model):
    """How many times an instance occurred in one time bucket (EVENTSUM_TIME_INTERVAL minutes, epoch-aligned)."""

    # Foreign keys without indexes of their own: each leads one of the composite indexes below.
    event_instance = models.ForeignKey(EventInstance, on_delete=models.CASCADE, related_name="buckets", db_index=False)
    # Denormalized from the instance so /search aggregates straight from one index.
    event_base = models.ForeignKey(EventBase, on_delete=models.CASCADE, related_name="buckets", db_index=False)
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+", db_index=False)
    bucket_start = models.DateTimeField()
    count = models.BigIntegerField(default=0)
    last_seen = models.DateTimeField()
    counters = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_instance", "bucket_start"], name="bucket_identity"),
        ]
        # `count`, `last_seen` and `counters` are in no index, so an occurrence updates its bucket in place
        # (a HOT update, with room left by the table's fillfactor) without touching the indexes.
        # No index on bucket_start alone: buckets arrive in time order, and in a table laid out that way the
        # planner took /search's window to such an index and filtered every other service's rows out (28 ms
        # against 12 for 1,000 bases). Pruning walks (service, bucket_start) instead.
        indexes = [
            models.Index(fields=["service", "bucket_start"], include=["event_base"], name="bucket_service_time"),
            models.Index(fields=["event_base", "bucket_start"], name="bucket_base_time"),
        ]

    def __str__(self) -> str:
        return f"{self.count} × instance #{self.event_instance_id} at {self.bucket_start:%Y-%m-%d %H:%M}"


class RateWindow(models.Model):
    """Events captured per service in one minute, for EVENTSUM_RATE_LIMIT. In the database, so the limit
    holds across every server process."""

    # No index of its own: the identity constraint leads with it.
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+", db_index=False)
    window_start = models.DateTimeField()
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "window_start"], name="ratewindow_identity")]

    def __str__(self) -> str:
        return f"{self.count} events of service #{self.service_id} in the minute from {self.window_start}"
