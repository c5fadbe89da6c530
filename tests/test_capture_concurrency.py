"""Concurrent captures against a live server on real PostgreSQL: no duplicate rows, no lost counts."""

import json
import random
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db.models import Sum

from events.models import EventBase, EventInstance, OccurrenceBucket
from tests.conftest import make_event

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 8
REQUESTS_PER_CLIENT = 50


def post(url: str, payload) -> int:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_parallel_clients_sending_the_same_new_event_make_one_of_each_row_and_count_exactly(live_server):
    event = make_event(event_name="BrandNewError", timestamp="2024-05-01 12:00:30")
    url = live_server.url + "/capture"

    def client(_):
        return [post(url, event) for _ in range(REQUESTS_PER_CLIENT)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [status for batch in pool.map(client, range(CLIENTS)) for status in batch]

    assert statuses == [200] * CLIENTS * REQUESTS_PER_CLIENT
    assert EventBase.objects.count() == 1
    assert EventInstance.objects.count() == 1
    bucket = OccurrenceBucket.objects.get()
    assert bucket.count == CLIENTS * REQUESTS_PER_CLIENT


def test_parallel_arrays_over_overlapping_rows_in_any_order_neither_deadlock_nor_lose_counts(live_server):
    # 6 bases x 2 instances x 2 buckets, each client sending them shuffled, several times over.
    kinds = [
        make_event(event_name=f"Error{b}", lineno=line, timestamp=f"2024-05-01 12:0{minute}:00", message=f"m{b}")
        for b in range(6)
        for line in (1, 2)
        for minute in (0, 1)
    ]
    url = live_server.url + "/capture"
    rounds = 10

    def client(seed):
        shuffler = random.Random(seed)
        statuses = []
        for _ in range(rounds):
            batch = kinds + shuffler.sample(kinds, 5)
            shuffler.shuffle(batch)
            statuses.append(post(url, batch))
        return statuses

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [status for batch in pool.map(client, range(CLIENTS)) for status in batch]

    assert statuses == [200] * CLIENTS * rounds
    assert EventBase.objects.count() == 6
    assert EventInstance.objects.count() == 12
    assert OccurrenceBucket.objects.count() == 24
    assert OccurrenceBucket.objects.aggregate(total=Sum("count"))["total"] == CLIENTS * rounds * (len(kinds) + 5)
