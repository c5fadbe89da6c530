"""EVENTSUM_RATE_LIMIT: events per minute per service, kept in the database so every process shares it."""

import time

import pytest

from events.models import OccurrenceBucket
from tests.conftest import make_event, post_json
from tests.live_stack import LiveStack, request

pytestmark = pytest.mark.django_db


def test_it_is_off_by_default(client):
    for _ in range(5):
        assert post_json(client, "/capture", [make_event()] * 50).status_code == 200


def test_beyond_the_limit_capture_answers_429_with_retry_after_and_stores_nothing(client, settings):
    settings.EVENTSUM_RATE_LIMIT = 5
    assert post_json(client, "/capture", [make_event()] * 3).status_code == 200
    assert post_json(client, "/capture", [make_event()] * 2).status_code == 200

    refused = post_json(client, "/capture", make_event())
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "5 events per minute" in refused.json()["detail"] and "'WISH FE'" in refused.json()["detail"]
    assert sum(OccurrenceBucket.objects.values_list("count", flat=True)) == 5


def test_the_limit_is_per_service_and_a_mixed_batch_is_all_or_nothing(client, settings):
    settings.EVENTSUM_RATE_LIMIT = 4
    assert post_json(client, "/capture", [make_event(service="a")] * 4).status_code == 200
    mixed = post_json(client, "/capture", [make_event(service="b"), make_event(service="a")])
    assert mixed.status_code == 429
    assert "'a'" in mixed.json()["detail"] and "'b'" not in mixed.json()["detail"]
    # b's count was rolled back with the refused batch: it still has its whole minute
    assert post_json(client, "/capture", [make_event(service="b")] * 4).status_code == 200


def test_a_batch_bigger_than_the_limit_is_a_413_not_a_429_to_retry(client, settings):
    settings.EVENTSUM_RATE_LIMIT = 3
    response = post_json(client, "/capture", [make_event()] * 4 + [make_event(service="other")] * 3)
    assert response.status_code == 413  # it could never fit in a minute: waiting would not help
    assert "Retry-After" not in response
    assert response.json() == {
        "detail": "This array holds more events for one service than EVENTSUM_RATE_LIMIT lets in a minute (3): "
        "4 for 'WISH FE'. Send them in smaller arrays."
    }
    assert not OccurrenceBucket.objects.exists()
    assert post_json(client, "/capture", [make_event()] * 3).status_code == 200  # nothing was counted


def test_the_limit_holds_across_server_processes():
    with LiveStack(workers=3, extra_env={"EVENTSUM_RATE_LIMIT": "20"}) as stack:
        for attempt in range(3):
            service = f"shared-{attempt}"
            started = time.time()
            statuses = [request(stack.url + "/capture", make_event(service=service))[0] for _ in range(30)]
            if int(started // 60) == int(time.time() // 60):
                break  # all 30 in one rate-limit minute (else try again in the next)
        stored = stack.sql(
            "SELECT COALESCE(sum(o.count), 0) FROM events_occurrencebucket o "
            "JOIN events_service s ON s.id = o.service_id WHERE s.normalized_name = %s",
            [service.replace("-", "_")],
        )[0][0]
    # 30 requests spread over 3 workers: a limit kept in each process would have let all of them through.
    assert (statuses.count(200), statuses.count(429)) == (20, 10)
    assert stored == 20
