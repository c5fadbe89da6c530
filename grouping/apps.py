from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class GroupingConfig(AppConfig):
    name = "grouping"

    def ready(self) -> None:
        from grouping import builtins  # noqa: F401  registers the built-in filters and groupings

        # Any installed app can ship an `eventsum_filters` module that registers its own.
        autodiscover_modules("eventsum_filters")
