"""Starting the local pipeline in its own process, and driving its Claude stand-in, for the end-to-end tests
(the fixtures are in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobcore.model import JobStatus
from local import client
from local.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
# Five attempts a second or so apart (SQS delays are whole seconds): the schedule's shape, quickly.
WEBHOOK_SCHEDULE = "0.5,0.5,0.5,0.5"
BASE_ARGS = ("--port", "0", "--aws-port", "0", "--webhook-port", "0", "--inline-budget", "4", "--webhook-schedule", WEBHOOK_SCHEDULE)
READY_TIMEOUT_S = 120  # a loaded 2-core machine can take a minute to start every process
TERMINAL = frozenset(status.value for status in JobStatus if status.terminal)
# Reports a module adds for the end of the run (tests/conftest.py prints them): (title, lines).
SUMMARIES: list[tuple[str, list[str]]] = []


def start_pipeline(logs: Path, args: Sequence[str] = (), *, config: dict[str, Any] | None = None,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start the pipeline, logging under ``logs``; its ready line, plus ``process``, ``logs`` and a started
    webhook ``receiver``. ``config``: cdk.json context overrides that ``local.serve`` has no flag for
    (``local.serve --context``); ``env``: variables for its processes (the workers', e.g. MODEL_WAIT_LIMIT_S).
    Stop it with :func:`stop_pipeline`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."]), **(env or {})}
    env.pop("ANTHROPIC_API_KEY", None)
    context = [] if config is None else ["--context", json.dumps(config)]
    process = subprocess.Popen(
        [sys.executable, "-m", "local.serve", *context, *BASE_ARGS, *args, "--log-dir", str(logs)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=(logs / "serve.log").open("w"), text=True,
    )
    ready = _ready_line(process, logs)
    ready["process"], ready["logs"] = process, logs
    ready["receiver"] = WebhookReceiver(ready["webhook_secret"]).start()
    return ready


def _ready_line(process: subprocess.Popen, logs: Path) -> dict[str, Any]:
    """The first stdout line, within READY_TIMEOUT_S; the pipeline is stopped if it does not come."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline() if process.stdout else ""), daemon=True)
    reader.start()
    reader.join(READY_TIMEOUT_S)
    ready = json.loads(line[0] or "{}") if line else {}
    if not ready.get("ready"):
        _stop(process)
        raise AssertionError(f"the pipeline did not start within {READY_TIMEOUT_S} s; see {logs}")
    return ready


def stop_pipeline(ready: dict[str, Any]) -> None:
    ready["receiver"].stop()
    if ready.get("standin_url"):
        try:  # a model call still waiting (a test's long latency) answers now: the workers' drain need not wait it out
            StandIn(ready["standin_url"])(release=True)
        except OSError:
            pass  # the stand-in is gone already: nothing waits on it
    _stop(ready["process"])


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()  # our own child, by its handle
        process.wait(timeout=10)


class StandIn:
    """The Claude stand-in of a pipeline, over its control endpoints: ``standin(latency_s=3)``,
    ``standin(fail={"status": 500})`` (every call until reset), ``standin.requests()``."""

    def __init__(self, url: str):
        self.url = url

    def __call__(self, **settings: Any) -> None:
        request = urllib.request.Request(
            f"{self.url}/_standin/control", data=json.dumps(settings).encode(), method="POST",
            headers={"content-type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).read()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_standin/stats", timeout=5) as response:
            return json.loads(response.read())

    def requests(self) -> int:
        return self.stats()["requests"]

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/_standin/reset", data=b"{}", method="POST"), timeout=5).read()


def wait_until(condition, *, timeout_s: float, every_s: float = 0.2, what: str = "the condition"):
    """``condition()``'s first truthy value, asking every ``every_s`` for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(every_s)


def submit(pipeline: dict[str, Any], body: dict[str, Any], key: str = client.LOCAL_API_KEY) -> dict[str, Any]:
    """POST /v1/jobs, answered 200 (ran inline) or 202 (queued): the job."""
    status, _, job = client.call("POST", f"{pipeline['api_url']}/v1/jobs", body, key=key)
    assert status in (200, 202), job
    return job


def children(pid: int, containing: str) -> list[int]:
    """The live child processes of ``pid`` whose command line contains ``containing``: Linux's /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(") ")[2].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == pid and containing in command and not exited(int(entry.name)):
            found.append(int(entry.name))
    return found


def exited(pid: int) -> bool:
    """The process ``pid`` has exited (a zombie its parent has not reaped yet counts): Linux's /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2][:1] in "ZX"
    except FileNotFoundError:
        return True


def finished_job(pipeline: dict[str, Any], job_id: str, *, timeout_s: float = 60, key: str = client.LOCAL_API_KEY,
                 every_s: float = 0.2) -> dict[str, Any]:
    """The job as ``GET /v1/jobs/{id}`` answers it once it is terminal (every answer must be a 200)."""
    def done() -> dict[str, Any] | None:
        status, _, job = client.call("GET", f"{pipeline['api_url']}/v1/jobs/{job_id}", key=key)
        assert status == 200, job
        return job if job["status"] in TERMINAL else None
    return wait_until(done, timeout_s=timeout_s, every_s=every_s, what=f"job {job_id} finishing")
