"""The triage dashboard in a real browser: Debian's chromium driven by Playwright against a live server.

Screenshots of each screen are saved under test-artifacts/screenshots/ (the path is printed).
"""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from events.models import EventBase, EventGroup
from events.services import capture_events
from tests.conftest import make_event

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls in the test are still
    # synchronous and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    User.objects.create_superuser("triage", password="triage-pw")
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "triage")
    page.fill("#id_password", "triage-pw")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


@pytest.fixture
def events():
    capture_events(
        [
            make_event(
                service="Wish FE",
                event_name=f"Error{i}",
                message=f"failure {i}",
                vars={"obj": "<Cart object at 0x7f3a2c1b5d30>", "n": i},
            )
            for i in range(3)
        ]
        + [make_event(service="merchant-be", event_name="KeyError", environment="stage")] * 4
    )


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_triage_flow_filter_assign_and_inspect(page, events):
    page.goto("/admin/events/eventbase/")
    assert page.locator("#result_list tbody tr").count() == 4
    assert page.locator("svg.eventsum-chart").count() == 4
    shot(page, "1-base-list")

    page.click("#changelist-filter a:text-is('Wish FE')")
    page.wait_for_url("**service__id__exact=*")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    assert "merchant-be" not in page.locator("#result_list").inner_text()
    shot(page, "2-filtered-by-service")

    page.locator("#result_list tbody tr input.action-select").nth(0).check()
    page.locator("#result_list tbody tr input.action-select").nth(1).check()
    page.select_option("select[name=action]", "assign_to_group")
    page.click("button[name=index]")
    page.fill("#id_new_group", "checkout team")
    shot(page, "3-assign-to-group")
    page.click("input[value=Assign]")
    expect(page.locator(".messagelist")).to_be_visible()
    assert "2 event bases moved to group “checkout team”" in page.locator(".messagelist").inner_text()
    group = EventGroup.objects.get(name="checkout team")
    assert EventBase.objects.filter(event_group=group).count() == 2
    assert page.locator("#result_list").inner_text().count("checkout team") == 2
    shot(page, "4-after-assign")

    base = EventBase.objects.get(event_name="Error0")
    page.goto(f"/admin/events/eventbase/{base.pk}/change/")
    trace = page.locator(".eventsum-trace")
    assert trace.locator(".frame").count() == 2
    assert "func4" in trace.inner_text() and "test/server.py" in trace.inner_text()
    assert page.locator(".line.failing").first.inner_text().strip().endswith("print func4(3)")
    assert page.locator("#id_event_group").is_visible()
    shot(page, "5-base-page")

    page.locator(".inline-group td.field-instance_link a").first.click()
    page.wait_for_url("**/eventinstance/**")
    vars_table = page.locator(".frame-vars").last.inner_text()
    assert "obj" in vars_table and "0x7f3a2c1b5d30" in vars_table
    assert '"request_id"' not in page.content()  # extra_args of this event are {}
    assert page.locator("svg.eventsum-chart").is_visible()
    shot(page, "6-instance-page")
