from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class GroupingConfig(AppConfig):
    name = "grouping"

    def ready(self) -> None:
        # Every installed app's `eventsum_filters` module registers its filters and groupings; the
        # built-ins are this app's own (grouping/eventsum_filters.py), found the same way.
        autodiscover_modules("eventsum_filters")
