from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from events.permissions import TRIAGE_PERMISSIONS


class Command(BaseCommand):
    help = "Print an API token for a user, creating the user when missing. --triager also grants triage."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--triager", action="store_true", help="may assign groups and edit groups")
        parser.add_argument("--reset", action="store_true", help="replace the user's existing token")

    def handle(self, username, triager, reset, **options):
        try:  # as the admin's user form checks it: not blank, at most 150 characters, letters, digits and @.+-_
            User._meta.get_field("username").clean(username, None)
        except ValidationError as invalid:
            self.stderr.write(f"username {username!r}: {' '.join(invalid.messages)}")
            raise SystemExit(2) from None
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()  # an API user; give a password with `changepassword` for the admin
            user.save()
        if triager:
            codenames = [permission.split(".")[1] for permission in TRIAGE_PERMISSIONS]
            user.user_permissions.add(
                *Permission.objects.filter(codename__in=codenames, content_type__app_label="events")
            )
        if reset:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
