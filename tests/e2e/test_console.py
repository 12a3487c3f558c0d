"""The web console in a real headless Chromium (Debian's ``chromium``, driven by Playwright's Python client; no
browser download), against the local pipeline: sign in with a key, watch jobs appear and finish without a
reload, a job and its webhook deliveries, a redelivery, a cancel, paging, tenancy, escaping, the task
catalogue and its submit form, usage (the API's counters, and the job-list sum where the API has none), the model's
capacity. Each page's screenshot is taken; `make screenshots` writes them to docs/console/ (docs/local.md links them).

Every wait is for a condition in the page (Playwright's auto-waiting assertions), bounded; none is a sleep.
Without chromium the module is skipped, except under CI (``CI=true``), where that fails: ``make browser``
installs it. Every request the page makes goes to the pipeline's own origin, and no page raises an error.

This module's pipeline runs one job at a time on its cpu worker (``--worker-concurrency 1``), so that a job
can be held in the queue behind another and canceled there; its model calls are paced by a budget far above what
they use (admission on: the capacity page has a budget to show), and the usage test's key has a monthly budget.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from local import client
from local.gateway import api_key_id
from tests.bodies import LONG, SHORT
from tests.e2e.harness import finished_job, submit, wait_until

USAGE_KEY = "console-usage"
MONTHLY_BUDGET_USD = 5
PIPELINE_ARGS = ("--worker-concurrency", "1", "--context", json.dumps({
    "model_rate_limits": {"*": {"rpm": 1200, "itpm": 2_000_000, "otpm": 400_000}},
    "tenant_budgets_usd": {api_key_id(USAGE_KEY): MONTHLY_BUDGET_USD}}))
# `make screenshots` writes them where docs/local.md links them (docs/console/); any other run takes them all the same
# (each page is rendered and captured) but keeps them out of the work tree.
SHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "jobpipe-console-shots")
# How long the console's job list waits before looking again when nothing it shows is unfinished (console.js).
IDLE_MS = int(re.search(r"const IDLE_MS = (\d+);", (Path(__file__).parents[2] / "lambda_src/router/console/console.js")
                        .read_text()).group(1))  # type: ignore[union-attr]
WAIT_MS = 90_000  # the slowest condition: a queued job run by the one worker on a loaded 2-core machine
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    if executable is None:
        message = "no chromium on PATH (make browser installs Debian's package; CHROMIUM= names another)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, pipeline: dict[str, Any]) -> Iterator[BrowserContext]:
    """A fresh tab session (its own sessionStorage); at the end, every request it made went to the pipeline's
    origin and no page raised an error or broke the content-security policy."""
    opened = browser.new_context(viewport=DESKTOP)
    opened.set_default_timeout(WAIT_MS)
    requests: list[str] = []
    problems: list[str] = []
    opened.on("request", lambda request: requests.append(request.url))

    def watch(page: Page) -> None:
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None)
    opened.on("page", watch)
    yield opened
    opened.close()
    origin = pipeline["api_url"] + "/"
    assert requests and [url for url in requests if not url.startswith(origin)] == []
    assert problems == []


def sign_in(context: BrowserContext, pipeline: dict[str, Any], key: str, *, at: str = "") -> Page:
    page = context.new_page()
    page.goto(f"{pipeline['api_url']}/console{at}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Open the console").click()
    expect(page.get_by_role("navigation", name="Console")).to_be_visible()
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def row(page: Page, job_id: str):
    return page.locator("#jobs-list tr", has=page.get_by_role("link", name=job_id))


def test_the_key_is_asked_once_per_tab_and_kept_out_of_urls_and_cookies(context, pipeline):
    page = context.new_page()
    page.goto(f"{pipeline['api_url']}/console")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "signin")
    page.get_by_label("API key").fill("console-key-once")
    page.get_by_role("button", name="Open the console").click()
    expect(page.get_by_text("No jobs yet.")).to_be_visible()

    page.reload()  # the same tab: still signed in
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    assert "console-key-once" not in page.url and context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('jobpipe.apiKey')") == "console-key-once"


def test_a_submitted_inline_job_and_a_queued_job_appear_and_finish_without_a_reload(context, pipeline):
    key = "console-live"
    context.clock.install()  # the page's timers on a clock that runs on, which the test may move ahead
    page = sign_in(context, pipeline, key)
    expect(page.get_by_text("No jobs yet.")).to_be_visible()
    page.evaluate("window.stillTheSamePage = true")

    # The inline job, through the console's own form, built from the task's input_schema.
    page.get_by_role("link", name="Tasks", exact=True).click()
    page.get_by_role("link", name="Submit a claude.messages job").click()
    page.get_by_label("max_tokens (required)").fill("60")
    page.get_by_label("messages (required) (JSON)").fill('[{"role": "user", "content": "Name one AWS region."}]')
    shot(page, "submit")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    inline_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator("main")).to_contain_text("inline: expected")
    expect(page.locator("main")).to_contain_text("Summary: Name one AWS region.")

    # The queued job, submitted elsewhere while the list is open: it appears and finishes by itself.
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(row(page, inline_id)).to_contain_text("succeeded")
    queued = submit(pipeline, LONG, key)
    assert queued["status"] == "queued"
    page.clock.fast_forward(IDLE_MS)  # the list's next look, due that long after its last (nothing was unfinished)
    expect(row(page, queued["id"])).to_be_visible()
    expect(row(page, queued["id"])).to_contain_text("succeeded")
    expect(row(page, queued["id"])).to_contain_text("cpu")
    assert page.evaluate("window.stillTheSamePage") is True  # never reloaded
    ids = page.locator("#jobs-list tbody tr td:first-child").all_inner_texts()
    assert ids == [queued["id"], inline_id]  # newest first
    shot(page, "jobs")
    page.set_viewport_size(PHONE)
    shot(page, "jobs-phone")


def test_a_job_its_deliveries_and_a_redelivery(context, pipeline):
    key = "console-deliveries"
    receiver = pipeline["receiver"]
    job = submit(pipeline, {**SHORT, "webhook": {"url": receiver.url + "?fail=1"}, "metadata": {"customer": "acme"}}, key)
    page = sign_in(context, pipeline, key)
    page.get_by_role("link", name=job["id"]).click()
    expect(page.get_by_role("heading", name=f"Job {job['id']}")).to_be_visible()
    main = page.locator("main")
    for shown in ("created", "started", "succeeded", "inline: expected", "1 attempt", "input tokens", "actual", "acme"):
        expect(main).to_contain_text(shown)
    shot(page, "job")

    page.get_by_role("link", name="Webhook deliveries").click()
    deliveries = page.locator("#deliveries")
    expect(deliveries).to_contain_text("delivered")  # the first attempt got a 503, the second a 204
    expect(deliveries.locator("tbody tr")).to_have_count(2)
    expect(deliveries.locator("tbody tr").first).to_contain_text("503")
    shot(page, "deliveries")
    event_id = deliveries.locator(".mono").nth(1).inner_text()
    assert receiver.attempts[event_id] == 2

    page.get_by_role("button", name="Redeliver the event").click()
    expect(deliveries.locator("tbody tr")).to_have_count(3)
    expect(deliveries.locator("tbody tr").nth(2)).to_contain_text("204")
    expect(deliveries).to_contain_text("delivered")
    wait_until(lambda: receiver.attempts[event_id] == 3, timeout_s=30, what="the redelivered event")


def test_a_queued_job_shows_why_it_waits_and_is_canceled_from_its_page(context, pipeline, standin):
    key = "console-cancel"
    # The one worker is held by the blocker for longer than a loaded machine takes to open the page, so the next
    # job is still queued when it is canceled; the blocker is canceled at the end.
    standin(latency_s=30)
    blocker = submit(pipeline, {"task": "documents.summarize", "input": {"documents": [{"text": "Hold the worker."}]}}, key)
    wait_until(lambda: client.call("GET", f"{pipeline['api_url']}/v1/jobs/{blocker['id']}", key=key)[2]["status"] == "running",
               timeout_s=60, what="the blocker running")
    job = submit(pipeline, LONG, key)
    assert job["status"] == "queued"

    page = sign_in(context, pipeline, key, at=f"#/jobs/{job['id']}")
    expect(page.locator("#waiting")).to_contain_text("Waiting for a worker of the cpu lane")
    expect(page.locator("main ol.timeline")).to_contain_text("not yet")
    shot(page, "job-queued")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("main .toolbar .status")).to_have_text("canceled")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    status, _, canceled = client.call("GET", f"{pipeline['api_url']}/v1/jobs/{job['id']}", key=key)
    assert status == 200 and canceled["status"] == "canceled" and canceled["attempts"] == 0
    client.call("POST", f"{pipeline['api_url']}/v1/jobs/{blocker['id']}/cancel", key=key)
    standin(release=True)  # the blocker's call answers now: its run sees the cancel and ends
    finished_job(pipeline, blocker["id"], key=key, timeout_s=90)


def test_45_jobs_page_by_the_api_cursor_and_another_key_sees_none_of_them(context, pipeline):
    key = "console-pages"
    with ThreadPoolExecutor(max_workers=8) as pool:
        submitted = list(pool.map(lambda _: submit(pipeline, {**SHORT, "mode": "async"}, key)["id"], range(45)))
    page = sign_in(context, pipeline, key)
    pages: list[list[str]] = []
    cells = page.locator("#jobs-list tbody tr td:first-child")
    for size in (20, 20, 5):
        expect(page.locator("#page-label")).to_have_text(f"Page {len(pages) + 1}")
        expect(cells).to_have_count(size)
        pages.append(cells.all_inner_texts())
        if size == 20:
            page.get_by_role("button", name="Next page").click()
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    assert sorted(sum(pages, [])) == sorted(submitted) and len(set(sum(pages, []))) == 45
    page.get_by_role("button", name="Previous page").click()
    expect(page.locator("#page-label")).to_have_text("Page 2")
    expect(cells.first).to_have_text(pages[1][0])

    page.get_by_role("button", name="Forget key").click()
    page.get_by_label("API key").fill("console-someone-else")
    page.get_by_role("button", name="Open the console").click()
    expect(page.get_by_text("No jobs yet.")).to_be_visible()
    page.goto(f"{pipeline['api_url']}/console#/jobs/{submitted[0]}")
    status, _, refused = client.call("GET", f"{pipeline['api_url']}/v1/jobs/{submitted[0]}", key="console-someone-else")
    assert status == 404
    expect(page.get_by_role("alert")).to_contain_text(refused["error"]["message"])  # the API's own words


def test_markup_in_a_job_s_metadata_and_result_is_shown_as_text(context, pipeline):
    key = "console-markup"
    script = "<script>window.pwned = 1</script>"
    image = "<img src=x onerror=\"window.pwned = 2\">"
    body = {**SHORT, "input": {**SHORT["input"], "messages": [{"role": "user", "content": image}]},
            "metadata": {"note": script, "html": image}}
    job = submit(pipeline, body, key)
    page = sign_in(context, pipeline, key, at=f"#/jobs/{job['id']}")

    metadata = page.locator("#metadata")
    expect(metadata).to_contain_text(script)
    expect(metadata).to_contain_text(image)
    expect(page.locator("main pre")).to_contain_text("Summary: <img src=x")  # the result echoes it: text too
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_tasks_and_an_api_error_as_the_api_words_it(context, pipeline):
    key = "console-tasks"
    page = sign_in(context, pipeline, key)

    page.get_by_role("link", name="Tasks", exact=True).click()
    for name in ("claude.messages", "documents.summarize", "invoice.extract"):
        expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.locator("main")).to_contain_text("cpu: expected")
    page.locator("summary", has_text="Input schema").first.click()
    expect(page.locator("details[open] pre")).to_contain_text('"required"')
    shot(page, "tasks")

    page.get_by_role("link", name="Submit a invoice.extract job").click()
    page.get_by_label("Metadata (JSON object of strings, optional)").fill('{"n": 5}')
    page.get_by_label("text (required)").fill("ACME invoice 42")
    page.get_by_role("button", name="Submit").click()
    _, _, refused = client.call("POST", f"{pipeline['api_url']}/v1/jobs",
                                {"task": "invoice.extract", "input": {"text": "ACME invoice 42"}, "mode": "auto",
                                 "metadata": {"n": 5}}, key=key)
    expect(page.get_by_role("alert")).to_contain_text(refused["error"]["message"])
    expect(page.get_by_role("alert")).to_contain_text(refused["error"]["type"])


def usage_of(pipeline: dict[str, Any], key: str, query: str = "") -> dict[str, Any]:
    status, _, answer = client.call("GET", f"{pipeline['api_url']}/v1/usage{query}", key=key)
    assert status == 200, answer
    return answer


def all_tokens(row: dict[str, Any]) -> int:
    return sum(row["tokens"].values())


def test_usage_shows_the_api_s_counters_and_its_budget_and_a_bad_range_as_the_api_words_it(context, pipeline):
    inline = submit(pipeline, SHORT, USAGE_KEY)
    queued = submit(pipeline, LONG, USAGE_KEY)
    assert inline["status"] == "succeeded" and queued["status"] == "queued"
    finished_job(pipeline, queued["id"], key=USAGE_KEY, timeout_s=WAIT_MS / 1000)
    # A job's counters are added just after its terminal write: wait for both, then the API's figures are final.
    wait_until(lambda: usage_of(pipeline, USAGE_KEY)["total"]["jobs"]["total"] == 2, timeout_s=30, what="both jobs counted")
    by_day, by_task = usage_of(pipeline, USAGE_KEY), usage_of(pipeline, USAGE_KEY, "?group_by=task")
    total = by_day["total"]
    assert total["cost_usd"] > 0 and all_tokens(total) > 0

    page = sign_in(context, pipeline, USAGE_KEY)
    page.get_by_role("link", name="Usage", exact=True).click()
    main = page.locator("main")
    expect(page.locator("#usage")).to_have_attribute("aria-busy", "false")
    expect(main).to_contain_text(f"From {by_day['from']} to {by_day['to']} (UTC)")
    expect(page.locator("#total-jobs")).to_have_text("2 (2 succeeded)")
    expect(page.locator("#total-cost")).to_have_text(f"${total['cost_usd']:.6f}")
    expect(page.locator("#total-tokens")).to_have_text(str(all_tokens(total)))
    expect(page.locator("#total-calls")).to_have_text(str(total["model_calls"]))
    expect(page.locator("#usage-from")).to_have_value(by_day["from"])
    expect(page.locator("#usage-to")).to_have_value(by_day["to"])
    budget = by_day["budget"]
    assert budget["monthly_usd"] == MONTHLY_BUDGET_USD
    expect(page.locator("#usage-budget")).to_contain_text(
        f"${budget['month_spent_usd']:.6f} of ${MONTHLY_BUDGET_USD} spent this month (UTC); ${budget['remaining_usd']:.6f} left")
    expect(page.locator("svg.chart")).to_have_count(3)

    per_day = page.get_by_role("table", name="Per day").locator("tbody tr")
    expect(per_day).to_have_count(len(by_day["groups"]))
    for index, group in enumerate(by_day["groups"]):
        expect(per_day.nth(index).locator("td").nth(0)).to_have_text(group["day"])
        expect(per_day.nth(index).locator("td").nth(1)).to_have_text(str(group["jobs"]["total"]))
        expect(per_day.nth(index).locator("td").nth(3)).to_have_text(str(all_tokens(group)))
    per_task = page.get_by_role("table", name="Per task").locator("tbody tr")
    assert [group["task"] for group in by_task["groups"]] == ["claude.messages", "documents.summarize"]
    expect(per_task).to_have_count(2)
    for index, group in enumerate(by_task["groups"]):
        expect(per_task.nth(index).locator("td").nth(0)).to_have_text(group["task"])
        expect(per_task.nth(index).locator("td").nth(1)).to_have_text("1")
        expect(per_task.nth(index).locator("td").nth(3)).to_have_text(str(all_tokens(group)))
    shot(page, "usage")

    # A range the API refuses: its words, in an alert; then a quiet one.
    page.get_by_label("From", exact=True).fill("2000-01-01")
    page.get_by_label("To", exact=True).fill("2000-12-31")
    page.get_by_role("button", name="Show").click()
    refused = client.call("GET", f"{pipeline['api_url']}/v1/usage?from=2000-01-01&to=2000-12-31&group_by=day", key=USAGE_KEY)
    assert refused[0] == 422 and refused[2]["error"]["field"] == "from"
    expect(page.get_by_role("alert")).to_contain_text(refused[2]["error"]["message"])
    expect(page.get_by_role("alert")).to_contain_text("field from")
    page.get_by_label("To", exact=True).fill("2000-01-31")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#no-usage")).to_have_text("No job finished on these days.")
    expect(page.locator("#total-jobs")).to_have_text("0")
    assert "from=2000-01-01" in page.url and "to=2000-01-31" in page.url


def test_usage_falls_back_to_the_job_list_where_the_api_has_no_usage_endpoint(context, pipeline):
    key = "console-usage-fallback"
    submit(pipeline, SHORT, key)
    page = sign_in(context, pipeline, key)
    not_found = json.dumps({"error": {"type": "NOT_FOUND", "message": "no such route"}})
    page.route("**/v1/usage?**", lambda route: route.fulfill(status=404, content_type="application/json", body=not_found))
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page.locator("main")).to_contain_text("This API has no usage endpoint: from your 1 most recent jobs")
    expect(page.get_by_role("table", name="Per task")).to_contain_text("claude.messages")
    expect(page.locator("svg.chart")).to_have_count(3)
    expect(page.locator("#usage-from")).to_be_hidden()


def test_the_capacity_page_shows_the_model_s_budget_and_the_caller_s_waiting_jobs(context, pipeline):
    key = "console-capacity"
    assert submit(pipeline, SHORT, key)["status"] == "succeeded"  # a model call of this tenant's, paced
    page = sign_in(context, pipeline, key)
    link = page.get_by_role("link", name="Capacity", exact=True)
    expect(link).to_be_visible()
    link.click()
    expect(page.get_by_role("heading", name="Capacity", exact=True)).to_be_visible()
    expect(page.locator("#capacity")).to_have_attribute("aria-busy", "false")
    status, _, capacity = client.call("GET", f"{pipeline['api_url']}/v1/capacity", key=key)
    assert status == 200 and capacity["admission"] == "on" and capacity["budgets"], capacity
    expect(page.locator("#admission")).to_contain_text("Admission is on")
    expect(page.locator("#capacity-waiting")).to_contain_text(
        f"{capacity['waiting']['jobs']} of the {capacity['waiting']['of_queued_jobs_seen']} queued jobs seen")
    cards = page.locator("#capacity section.card")
    expect(cards).to_have_count(len(capacity["budgets"]))
    for index, budget in enumerate(capacity["budgets"]):
        card = cards.nth(index)
        expect(card.get_by_role("heading", name=budget["family"])).to_be_visible()
        rows = card.locator("tbody tr")
        expect(rows).to_have_count(3)
        for row_index, name in enumerate(("rpm", "itpm", "otpm")):
            expect(rows.nth(row_index).locator("td").nth(1)).to_have_text(str(budget["limits"][name]))
        expect(card).to_contain_text("your recent share")
        expect(card).to_contain_text("not blocked" if budget["blocked_until"] is None else "blocked until")
    shot(page, "capacity")
