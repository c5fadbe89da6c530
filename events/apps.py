from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


def ensure_default_group(sender, using="default", **kwargs) -> None:
    """Group 0 must always exist; a migration creates it, and this restores it after a database flush."""
    from events.models import DEFAULT_GROUP_ID, EventGroup

    EventGroup.objects.using(using).get_or_create(id=DEFAULT_GROUP_ID, defaults={"name": "default"})


class EventsConfig(AppConfig):
    name = "events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(ensure_default_group, sender=self)
        from events.authentication import connect_signals

        connect_signals()


class EventsumAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, with Eventsum's site as the default one (named in INSTALLED_APPS)."""

    default = False  # EventsConfig stays this module's config for the "events" entry
    default_site = "events.admin_site.EventsumAdminSite"
