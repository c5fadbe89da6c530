"""Schema fuzzing: schemathesis generates requests for every operation in /schema, authenticated as a
superuser; no answer may be a 5xx, and answers must match the schema where it documents them."""

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from eventsum_project.wsgi import application

FUZZED: dict[str, int] = {}  # requests sent, by method: reported at the end of the run
schema = schemathesis.openapi.from_wsgi("/schema", application)


@pytest.fixture
def token(db):
    # Calling the WSGI app directly (unlike Django's test client) would close the test's database
    # connection at the end of each request; keep it open, as the test client does.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    user = User.objects.create_superuser("fuzzer", password="pw")
    yield Token.objects.create(user=user).key
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_survives_generated_requests(case, token):
    FUZZED[case.method] = FUZZED.get(case.method, 0) + 1
    case.call_and_validate(
        headers={"Authorization": f"Token {token}"},
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
