"""The README's example is the user's own event, verbatim, and it is captured."""

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_EVENT, post_json

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_example_file_is_the_users_example_event():
    assert json.loads((ROOT / "docs" / "example-event.json").read_text()) == EXAMPLE_EVENT


@pytest.mark.django_db
def test_the_readme_example_is_captured(client):
    body = (ROOT / "docs" / "example-event.json").read_bytes()
    response = client.post("/capture", data=body, content_type="application/json")
    assert response.status_code == 200
    assert set(response.json()) == {"event_base_id", "event_instance_id", "event_group_id"}
    assert post_json(client, "/capture", EXAMPLE_EVENT).json() == response.json()
