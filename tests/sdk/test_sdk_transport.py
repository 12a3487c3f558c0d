"""The SDK without the pipeline: its error classes against the service's, timeouts against a server that
never answers, retries against scripted servers, and webhook verification against the reference library."""

from __future__ import annotations

import base64
import datetime as dt
import inspect
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from standardwebhooks import Webhook

import jobpipe
from jobcore import errors as service_errors
from jobpipe import Client, Job, Retries, Timeout, errors
from jobpipe.webhooks import WebhookVerificationError, verify

KEY = "sdk-key"
RUNNING = {"id": "job_1", "task": "documents.summarize", "status": "running"}
DONE = {"id": "job_1", "task": "documents.summarize", "status": "succeeded", "result": {"documents": 2}}


class Sleeps(list):
    """A ``sleep`` that records the delays asked for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(url: str, *, sleeps: Sleeps | None = None, **options) -> Client:
    return Client(url, KEY, sleep=sleeps if sleeps is not None else Sleeps(), **options)


def error(code: int, type_: str, message: str = "no", **extra) -> tuple:
    headers = extra.pop("headers", {})
    return code, {"error": {"type": type_, "message": message, **extra}}, headers


# --- the error classes follow the service's ------------------------------------------------------


def test_every_error_type_the_service_defines_has_an_exception_class():
    defined = {cls.type for _, cls in inspect.getmembers(service_errors, inspect.isclass)
               if issubclass(cls, service_errors.JobError)}
    # The router's own answers, beside the domain's: its 500, its unknown route, a 503 it writes by hand.
    answered = {"internal_error", "not_found", "unavailable", "misconfigured"}
    missing = sorted((defined | answered) - set(jobpipe.ERROR_TYPES))
    assert not missing, f"add an exception class to sdk/src/jobpipe/errors.py for each of {missing}"
    assert all(issubclass(cls, jobpipe.APIError) and cls.type == name for name, cls in jobpipe.ERROR_TYPES.items())


def test_each_error_class_is_exported_and_a_subclass_follows_the_service_hierarchy():
    for cls in jobpipe.ERROR_TYPES.values():
        assert getattr(jobpipe, cls.__name__) is cls
    assert issubclass(errors.IdempotencyMismatchError, errors.InvalidInputError)  # as in jobcore: a 422 with a field
    assert issubclass(service_errors.IdempotencyMismatchError, service_errors.InvalidInputError)


def test_the_sdk_imports_nothing_of_the_service():
    """Users install the SDK alone: it must not need jobcore, jobadapters or local (PYTHONPATH cleared)."""
    code = ("import sys, jobpipe, jobpipe.cli, jobpipe.configure, jobpipe.webhooks; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'jobcore', 'jobadapters', 'local', 'router', 'boto3'}); "
            "print(bad)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- timeouts ------------------------------------------------------------------------------------


def test_a_server_that_never_answers_times_out_with_a_clear_error(silent):
    with pytest.raises(jobpipe.APITimeoutError) as caught:
        client(silent.url, timeout=Timeout(connect=2, read=0.5), max_retries=0).tasks.list()
    message = str(caught.value)
    assert "no answer within 0.5 s" in message and "read timeout" in message and silent.url in message
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, jobpipe.APIConnectionError)


def test_a_get_that_times_out_is_retried_with_back_off_then_fails(silent):
    sleeps = Sleeps()
    with pytest.raises(jobpipe.APITimeoutError):
        client(silent.url, sleeps=sleeps, timeout=Timeout(connect=2, read=0.3), max_retries=2).jobs.get("job_1")
    assert len(sleeps) == 2 and all(0 <= s <= 8 for s in sleeps)
    assert len(silent.accepted) == 3  # the first request and two retries


def test_every_call_has_a_timeout_by_default():
    default = Timeout()
    assert 0 < default.connect < default.read < 60
    assert Client("http://127.0.0.1:1", KEY)._transport.timeout == default


def test_a_long_poll_reads_for_longer_than_it_asks_the_server_to_wait(scripted):
    """The read timeout alone (1 s) is shorter than the server holds its answer (2 s, within the 3 s
    asked for): the request's read timeout must allow for both."""
    server = scripted((200, DONE))
    server.delay_s = 2.0
    job = client(server.url, timeout=Timeout(connect=2, read=1), max_retries=0).jobs.get("job_1", wait=3)
    assert job.succeeded and "wait=3" in server.requests[0]["path"]


def test_a_refused_connection_is_a_connection_error(unused_port):
    sleeps = Sleeps()
    with pytest.raises(jobpipe.APIConnectionError) as caught:
        client(f"http://127.0.0.1:{unused_port}", sleeps=sleeps).jobs.redeliver("job_1")
    assert "could not connect" in str(caught.value)
    assert len(sleeps) == 3  # nothing was sent: even a request that is never retried may be sent again


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- retries -------------------------------------------------------------------------------------


def test_a_get_is_retried_on_503_after_the_retry_after_it_asks_for(scripted):
    server = scripted(error(503, "unavailable", headers={"Retry-After": "2"}), (200, {"tasks": [{"name": "t"}]}))
    sleeps = Sleeps()
    assert client(server.url, sleeps=sleeps).tasks.list() == [{"name": "t"}]
    assert len(server.requests) == 2 and sleeps == [2.0]


def test_429_and_5xx_are_retried_with_growing_jittered_delays(scripted):
    server = scripted((429, {"message": "Too Many Requests"}), (502, {"message": "Bad Gateway"}), error(500, "internal_error"),
                      (200, DONE))
    sleeps = Sleeps()
    retries = Retries(max_retries=3, backoff_s=1.0, max_backoff_s=8.0)
    job = Client(server.url, KEY, retries=retries, sleep=sleeps).jobs.get("job_1")
    assert job.succeeded and len(server.requests) == 4
    assert [0 <= s <= 2 ** n for n, s in enumerate(sleeps)] == [True, True, True]
    # Full jitter draws from [0, the cap]; at the top of every draw, the caps double: 1, 2, 4 s.
    server = scripted((429, {"message": "Too Many Requests"}), (502, {"message": "Bad Gateway"}), error(500, "internal_error"),
                      (200, DONE))
    top = Sleeps()
    Client(server.url, KEY, retries=retries, sleep=top, jitter=lambda low, high: high).jobs.get("job_1")
    assert top == [1.0, 2.0, 4.0]


def test_retries_give_up_after_max_retries_with_the_last_error(scripted):
    server = scripted(error(503, "unavailable"))
    with pytest.raises(errors.UnavailableError) as caught:
        client(server.url, max_retries=2).jobs.get("job_1")
    assert len(server.requests) == 3 and caught.value.status_code == 503


def test_a_create_is_retried_with_the_same_idempotency_key(scripted):
    server = scripted("drop", error(503, "unavailable", job_id="job_1"), (202, {**RUNNING, "status": "queued"}))
    job = client(server.url).jobs.create("documents.summarize", {"documents": []})
    assert job.status == "queued" and len(server.requests) == 3
    keys = {request["headers"]["idempotency-key"] for request in server.requests}
    assert len(keys) == 1 and next(iter(keys)).startswith("jobpipe-")
    assert json.loads(server.requests[0]["body"]) == {"task": "documents.summarize", "input": {"documents": []}}


def test_each_create_gets_its_own_key_unless_the_caller_gives_one(scripted):
    server = scripted((200, DONE))
    jobs = client(server.url).jobs
    jobs.create("t", {})
    jobs.create("t", {})
    jobs.create("t", {}, idempotency_key="order-42")
    keys = [request["headers"]["idempotency-key"] for request in server.requests]
    assert keys[0] != keys[1] and keys[2] == "order-42"


def test_a_request_that_is_not_safe_to_repeat_is_not_retried(scripted):
    server = scripted(error(503, "unavailable"), (202, {}))
    with pytest.raises(errors.UnavailableError):
        client(server.url).jobs.redeliver("job_1")  # a new series of webhook attempts each time
    assert len(server.requests) == 1


@pytest.mark.parametrize("answer, cls", [
    (error(422, "invalid_input", "input.max_tokens: must be a whole number", field="input.max_tokens"), errors.InvalidInputError),
    (error(404, "not_found"), errors.NotFoundError),
    (error(409, "job_finished", status="succeeded"), errors.JobFinishedError),
    (error(503, "model_unavailable", job_id="job_9", links={"job": "/v1/jobs/job_9"}, headers={"Retry-After": "30"}),
     errors.ModelUnavailableError),
    (error(503, "misconfigured"), errors.MisconfiguredError),
])
def test_errors_a_retry_cannot_fix_are_raised_at_once_as_their_class(scripted, answer, cls):
    server = scripted(answer)
    with pytest.raises(cls) as caught:
        client(server.url).jobs.get("job_1")
    assert len(server.requests) == 1
    raised = caught.value
    body = answer[1]["error"]
    assert (raised.status_code, raised.type, raised.message) == (answer[0], body["type"], body["message"])
    assert raised.field == body.get("field") and raised.job_id == body.get("job_id")
    if "Retry-After" in answer[2]:
        assert raised.retry_after == float(answer[2]["Retry-After"])
    if cls is errors.JobFinishedError:
        assert raised.status == "succeeded"


def test_idempotency_in_progress_is_retried(scripted):
    server = scripted(error(409, "idempotency_in_progress"), (200, DONE))
    assert client(server.url).jobs.create("t", {}, idempotency_key="k").succeeded
    assert len(server.requests) == 2


def test_a_retry_after_beyond_the_limit_is_not_waited_for(scripted):
    server = scripted(error(503, "unavailable", headers={"Retry-After": "3600"}))
    sleeps = Sleeps()
    with pytest.raises(errors.UnavailableError):
        client(server.url, sleeps=sleeps).tasks.list()
    assert sleeps == [] and len(server.requests) == 1


@pytest.mark.parametrize("status, body, cls", [
    (403, {"message": "Forbidden"}, errors.UnauthenticatedError),  # API Gateway without a valid key
    (429, {"message": "Too Many Requests"}, errors.RateLimitedError),
    (418, {"error": {"type": "teapot", "message": "short and stout"}}, errors.APIError),
    (422, {"error": {"type": "some_new_type", "message": "a type this SDK does not know yet"}}, errors.InvalidInputError),
])
def test_answers_without_a_known_type_get_the_class_of_their_status(scripted, status, body, cls):
    server = scripted((status, body))
    with pytest.raises(errors.APIError) as caught:
        client(server.url, max_retries=0).tasks.list()
    assert type(caught.value) is cls and caught.value.status_code == status


def test_a_cancel_whose_answer_was_lost_meets_its_job_canceled_and_returns_it(scripted):
    canceled = {**RUNNING, "status": "canceled"}
    server = scripted("drop", error(409, "job_finished", status="canceled"), (200, canceled))
    job = client(server.url).jobs.cancel("job_1")
    assert job.status == "canceled"
    assert [r["method"] for r in server.requests] == ["POST", "POST", "GET"]


def test_a_cancel_of_a_finished_job_raises_job_finished(scripted):
    server = scripted(error(409, "job_finished", status="succeeded"))
    with pytest.raises(errors.JobFinishedError) as caught:
        client(server.url).jobs.cancel("job_1")
    assert caught.value.status == "succeeded"


# --- wait and list -------------------------------------------------------------------------------


def test_wait_long_polls_until_the_job_finishes(scripted):
    server = scripted((200, RUNNING), (200, RUNNING), (200, DONE))
    seen = []
    job = client(server.url).jobs.wait("job_1", timeout=60, on_update=lambda j: seen.append(j.status))
    assert job.succeeded and job.result == {"documents": 2}
    assert seen == ["running", "succeeded"]
    assert all("wait=20" in request["path"] for request in server.requests)


def test_wait_backs_off_when_the_server_answers_at_once(scripted):
    server = scripted((200, RUNNING), (200, RUNNING), (200, RUNNING), (200, DONE))
    sleeps = Sleeps()
    assert client(server.url, sleeps=sleeps).jobs.wait("job_1", timeout=60).succeeded
    assert sleeps == [0.5, 1.0, 2.0]


def test_wait_gives_up_after_its_timeout_with_the_last_state(scripted):
    server = scripted((200, RUNNING))
    with pytest.raises(jobpipe.WaitTimeoutError) as caught:
        Client(server.url, KEY).jobs.wait("job_1", timeout=0.5)
    assert caught.value.job_id == "job_1" and caught.value.job.status == "running"
    assert "still running after 0.5 s" in str(caught.value)
    assert all(float(r["path"].split("wait=")[1]) <= 0.5 for r in server.requests)


def test_list_iterates_over_every_page(scripted):
    pages = [(200, {"jobs": [{**DONE, "id": f"job_{i}"} for i in (1, 2)], "next_cursor": "c2"}),
             (200, {"jobs": [{**DONE, "id": "job_3"}], "next_cursor": None})]
    server = scripted(*pages)
    listing = client(server.url).jobs.list(status="succeeded", limit=2)
    assert [job.id for job in listing] == ["job_1", "job_2", "job_3"]
    assert "cursor" not in server.requests[0]["path"] and "cursor=c2" in server.requests[1]["path"]
    assert all("status=succeeded" in r["path"] and "limit=2" in r["path"] for r in server.requests)


def test_the_base_url_s_path_prefixes_every_route(scripted):
    """An execute-api URL ends with its stage (/dev/): the routes are under it."""
    server = scripted((200, {"tasks": []}))
    client(f"{server.url}/dev/").tasks.list()
    assert server.requests[0]["path"] == "/dev/v1/tasks" and server.requests[0]["headers"]["x-api-key"] == KEY


def test_a_job_that_failed_raises_its_error_s_class_on_request():
    failed = Job({"id": "job_1", "status": "failed", "error": {"type": "model_rejected", "message": "bad request"}})
    with pytest.raises(errors.ModelRejectedError, match="bad request") as caught:
        failed.raise_for_status()
    assert caught.value.job_id == "job_1"
    assert Job(DONE).raise_for_status() == DONE and Job(RUNNING).raise_for_status() == RUNNING
    with pytest.raises(errors.CanceledError):
        Job({"id": "job_2", "status": "canceled"}).raise_for_status()


# --- webhooks ------------------------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"a secret of the pipeline's, 32 b").decode()


def signed(body: str, *, secret: str = SECRET, at: float | None = None, msg_id: str = "evt_job_1_succeeded") -> dict[str, str]:
    when = dt.datetime.fromtimestamp(int(at if at is not None else time.time()), tz=dt.UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body)}


def test_verify_accepts_what_the_reference_library_signs():
    body = json.dumps({"id": "evt_job_1_succeeded", "type": "job.succeeded", "data": DONE})
    headers = signed(body)
    assert verify(body.encode(), headers, SECRET) == json.loads(body)
    assert verify(body, {k.upper(): v for k, v in headers.items()}, SECRET)["type"] == "job.succeeded"
    assert Webhook(SECRET).verify(body, headers) == verify(body, headers, SECRET)
    rotated = {**headers, "webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}
    assert verify(body, rotated, SECRET)["data"] == DONE  # one of several signatures matches


@pytest.mark.parametrize("change, reason", [
    (lambda body, headers: (body.replace("succeeded", "failed"), headers), "no signature matches"),
    (lambda body, headers: (body, {**headers, "webhook-id": "evt_other"}), "no signature matches"),
    (lambda body, headers: (body, {k: v for k, v in headers.items() if k != "webhook-signature"}), "missing a header"),
    (lambda body, headers: (body, {**headers, "webhook-signature": "v2,abc"}), "no signature matches"),
])
def test_verify_refuses_a_changed_or_incomplete_request(change, reason):
    body = json.dumps({"id": "evt_job_1_succeeded", "data": DONE})
    body, headers = change(body, signed(body))
    with pytest.raises(WebhookVerificationError, match=reason):
        verify(body, headers, SECRET)


def test_verify_refuses_another_secret_and_a_stale_or_future_timestamp():
    body = json.dumps({"id": "evt_1"})
    other = "whsec_" + base64.b64encode(b"another secret").decode()
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(body, signed(body, secret=other), SECRET)
    with pytest.raises(WebhookVerificationError, match="old"):
        verify(body, signed(body, at=time.time() - 600), SECRET)
    with pytest.raises(WebhookVerificationError, match="in the future"):
        verify(body, signed(body, at=time.time() + 600), SECRET)
    assert verify(body, signed(body, at=1_000_000), SECRET, now=1_000_100) == {"id": "evt_1"}
    with pytest.raises(WebhookVerificationError, match="not a webhook secret"):
        verify(body, signed(body), "whsec_!!!")
