"""The client: ``Client(base_url, api_key)`` with ``jobs``, ``tasks`` and ``webhooks``.

    client = Client("http://127.0.0.1:8080", "local-dev-key")
    job = client.jobs.create("claude.messages", {"max_tokens": 50, "messages": [...]}, wait=60)
    print(job.status, job.result)
"""

from __future__ import annotations

import builtins
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from jobpipe._http import Retries, Timeout, Transport
from jobpipe.config import resolve
from jobpipe.errors import JobFinishedError, WaitTimeoutError
from jobpipe.models import Job, Page
from jobpipe.webhooks import Webhooks

# The longest long poll the API takes (``GET /v1/jobs/{id}?wait=N``, N ≤ 20): it answers within API
# Gateway's 29 s.
MAX_LONG_POLL_S = 20.0
DEFAULT_WAIT_S = 300.0


class Client:
    """The job API. ``base_url`` and ``api_key`` default to ``JOBPIPE_API_URL`` and ``JOBPIPE_API_KEY``,
    then to the file ``jobpipe configure`` writes. ``timeout``: seconds, or a :class:`Timeout` (connect,
    read); every call has one. ``max_retries``: how often a safe request is sent again (0: never).
    ``sleep`` and ``jitter`` (a draw from ``[low, high]``, full jitter) are there for tests."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float | Timeout | None = None, max_retries: int = 3, retries: Retries | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[float, float], float] = random.uniform):
        settings = resolve(base_url, api_key)
        self.base_url = settings.api_url
        policy = retries or Retries(max_retries=max_retries)
        self._transport = Transport(settings.api_url, settings.api_key, timeout=Timeout.of(timeout), retries=policy,
                                    sleep=sleep, jitter=jitter)
        self.jobs = Jobs(self._transport, sleep=sleep)
        self.tasks = Tasks(self._transport)
        self.usage = Usage(self._transport)
        self.webhooks = Webhooks()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: every request opens its own connection."""

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"


class Jobs:
    def __init__(self, transport: Transport, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self._transport = transport
        self._sleep = sleep
        self._clock = clock

    def create(self, task: str, input: Any = None, *, mode: str | None = None, webhook: str | Mapping[str, Any] | None = None,
               metadata: Mapping[str, str] | None = None, hints: Mapping[str, Any] | None = None,
               max_queue_s: float | None = None, input_upload: str | None = None, idempotency_key: str | None = None,
               wait: float | None = None, on_update: Callable[[Job], None] | None = None,
               max_cost_usd: float | None = None) -> Job:
        """Submit a job: the finished job when it ran inline, else the queued one (or, with ``wait``, the
        job once finished, waiting at most ``wait`` seconds: :meth:`wait`). ``mode``: ``auto`` (default),
        ``sync``, ``async`` or ``batch``. ``webhook``: a URL, or ``{"url", "events"}``.

        Every create carries an ``Idempotency-Key`` (a fresh one unless you give yours), so a request whose
        answer was lost is retried safely: the API returns the job the first attempt created."""
        body: dict[str, Any] = {"task": task}
        if input_upload is not None:
            body["input_upload"] = input_upload
        else:
            body["input"] = input
        if mode is not None:
            body["mode"] = mode
        if webhook is not None:
            body["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if hints is not None:
            body["hints"] = dict(hints)
        if max_queue_s is not None:
            body["max_queue_s"] = max_queue_s
        if max_cost_usd is not None:  # refused (402) if its estimate is higher; stopped between model calls on reaching it
            body["max_cost_usd"] = max_cost_usd
        key = idempotency_key or f"jobpipe-{uuid.uuid4()}"
        response = self._transport.request("POST", "/v1/jobs", body=body, headers={"idempotency-key": key}, retry=True)
        job = Job(response.data)
        if on_update is not None:
            on_update(job)
        if wait is not None and not job.terminal:
            return self.wait(job.id, timeout=wait, on_update=on_update)
        return job

    def get(self, job_id: str, *, wait: float | None = None) -> Job:
        """The job; ``wait`` (at most 20 s): the API answers as soon as the job finishes, or after that long."""
        query = None
        if wait is not None:
            wait = max(0.0, min(float(wait), MAX_LONG_POLL_S))
            query = {"wait": f"{wait:.3f}".rstrip("0").rstrip(".")}
        response = self._transport.request("GET", f"/v1/jobs/{_segment(job_id)}", query=query, retry=True,
                                           extra_read_s=wait or 0.0)
        return Job(response.data)

    def wait(self, job_id: str, timeout: float = DEFAULT_WAIT_S, *, on_update: Callable[[Job], None] | None = None) -> Job:
        """The job once finished (whatever its outcome: check ``job.status`` or call ``raise_for_status()``).
        Long polls of up to 20 s each; should the API answer early without the job finished, polls again
        after a growing pause (0.5 s to 5 s). :class:`WaitTimeoutError` after ``timeout`` seconds, with the
        job's last state. ``on_update(job)``: called with each state seen."""
        deadline = self._clock() + timeout
        pause = 0.5
        last: Job | None = None
        while True:
            left = deadline - self._clock()
            started = self._clock()
            job = self.get(job_id, wait=max(0.0, min(MAX_LONG_POLL_S, left)))
            if on_update is not None and (last is None or job.status != last.status):
                on_update(job)
            last = job
            if job.terminal:
                return job
            left = deadline - self._clock()
            if left <= 0:
                raise WaitTimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s", job_id=job_id, job=job)
            if self._clock() - started < min(1.0, left / 2):  # answered at once: no long poll here; back off
                self._sleep(min(pause, left))
                pause = min(pause * 2, 5.0)

    def list(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None,
             source: str | None = None) -> JobList:
        """The jobs, newest first, fetched a page (``limit``: up to 100 jobs) at a time as you iterate:
        ``for job in client.jobs.list(status="failed")``; ``.pages()`` gives the pages themselves."""
        return JobList(self._transport, {"status": status, "limit": limit, "source": source}, cursor)

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job is ``canceled`` at once; a running one ``canceling`` until its worker stops it.
        :class:`JobFinishedError` for a finished job. Retried like a GET (a cancel can be repeated)."""
        try:
            response = self._transport.request("POST", f"/v1/jobs/{_segment(job_id)}/cancel", retry=True)
        except JobFinishedError as error:
            # A retry whose first attempt did cancel the job (its answer was lost) meets the job canceled.
            if error.attempts > 1 and error.status == "canceled":
                return self.get(job_id)
            raise
        return Job(response.data)

    def deliveries(self, job_id: str) -> dict[str, Any]:
        """The job's webhook delivery log: every attempt, its state, the next attempt's time."""
        return dict(self._transport.request("GET", f"/v1/jobs/{_segment(job_id)}/deliveries", retry=True).data)

    def redeliver(self, job_id: str) -> dict[str, Any]:
        """Send the job's terminal webhook event again (a new series of attempts). Not retried."""
        return dict(self._transport.request("POST", f"/v1/jobs/{_segment(job_id)}/deliveries", retry=False).data)


class JobList:
    """``client.jobs.list(...)``: iterate for the jobs (pages fetched as needed), or ``.pages()``."""

    def __init__(self, transport: Transport, query: dict[str, Any], cursor: str | None):
        self._transport = transport
        self._query = query
        self._cursor = cursor

    def pages(self) -> Iterator[Page]:
        cursor = self._cursor
        while True:
            response = self._transport.request("GET", "/v1/jobs", query={**self._query, "cursor": cursor}, retry=True)
            page = Page(jobs=[Job(view) for view in response.data.get("jobs", [])], next_cursor=response.data.get("next_cursor"))
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def __iter__(self) -> Iterator[Job]:
        for page in self.pages():
            yield from page.jobs


class Tasks:
    def __init__(self, transport: Transport):
        self._transport = transport

    def list(self) -> builtins.list[dict[str, Any]]:
        """The task catalogue: each task's profile, the route its typical job gets and why, its cost."""
        return list(self._transport.request("GET", "/v1/tasks", retry=True).data.get("tasks", []))


class Usage:
    def __init__(self, transport: Transport):
        self._transport = transport

    def get(self, *, from_: str | None = None, to: str | None = None, group_by: str | None = None) -> dict[str, Any]:
        """Your usage from ``from_`` to ``to`` (UTC dates, YYYY-MM-DD; default: this month so far), grouped by
        ``day`` (default), ``task`` or ``lane``: jobs by outcome, tokens, model calls, compute seconds, cost; and
        your monthly budget, if you have one."""
        query = {key: value for key, value in (("from", from_), ("to", to), ("group_by", group_by)) if value is not None}
        return dict(self._transport.request("GET", "/v1/usage", query=query or None, retry=True).data)


def _segment(job_id: str) -> str:
    return quote(str(job_id), safe="")
