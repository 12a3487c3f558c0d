"""The ``jobpipe`` command (the console script the virtualenv has) against the local pipeline: its output,
``--json`` for scripts, and exit codes that mean something.

The pipeline's cpu worker runs one job at a time (``--worker-concurrency 1``), so that a job can be held in
the queue behind another one.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from jobpipe import cli
from tests.bodies import LONG, SHORT
from tests.e2e.harness import wait_until

PIPELINE_ARGS = ("--worker-concurrency", "1")
JOBPIPE = Path(sys.executable).parent / "jobpipe"


class Jobpipe:
    """Runs ``jobpipe`` as a user would, as a tenant of its own, with no config file."""

    def __init__(self, api_url: str, config_home: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPIPE_")}
        self.env.update(JOBPIPE_API_URL=api_url, JOBPIPE_API_KEY=f"cli-{uuid.uuid4().hex[:12]}",
                        XDG_CONFIG_HOME=str(config_home))

    def __call__(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(JOBPIPE), *args], input=stdin, capture_output=True, text=True, timeout=120,
                              env={**self.env, **(env or {})})

    def json(self, *args: str, stdin: str | None = None) -> Any:
        done = self(*args, "--json", stdin=stdin)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def jobpipe(pipeline, tmp_path) -> Jobpipe:
    return Jobpipe(pipeline["api_url"], tmp_path / "config")


def test_the_console_script_is_installed():
    assert JOBPIPE.exists(), "make venv installs the SDK (requirements-dev.txt: -e ./sdk)"
    done = subprocess.run([str(JOBPIPE), "--help"], capture_output=True, text=True, check=True)
    assert "submit" in done.stdout and "exit status" in done.stdout


@pytest.mark.parametrize("command", ["", "submit", "get", "wait", "list", "cancel", "tasks", "configure"])
def test_the_help_is_plain_text(command, capsys):
    assert cli.main([command, "--help"] if command else ["--help"]) == cli.OK

    text = capsys.readouterr().out
    assert "usage: jobpipe" in text and "exit status" in text and "`" not in text, text
    assert not command or f"jobpipe {command}" in text
    assert command or "jobpipe submit claude.messages --input request.json --wait" in text


def test_tasks_prints_the_catalogue_and_json_for_scripts(jobpipe):
    done = jobpipe("tasks")
    assert done.returncode == cli.OK
    assert done.stdout.splitlines()[0].split()[:3] == ["TASK", "RUNS", "ON"]
    names = {task["name"] for task in jobpipe.json("tasks")["tasks"]}
    assert {"claude.messages", "documents.summarize"} <= names
    assert all(name in done.stdout for name in names)


def test_submit_a_short_job_from_stdin_prints_it_finished(jobpipe):
    done = jobpipe("submit", SHORT["task"], "--input", "-", stdin=json.dumps(SHORT["input"]))
    assert done.returncode == cli.OK, done.stderr
    assert "status: succeeded" in done.stdout and "route:  inline" in done.stdout and "Summary: Name one AWS region." in done.stdout
    job = jobpipe.json("submit", SHORT["task"], "--input", "-", stdin=json.dumps(SHORT["input"]))
    assert job["status"] == "succeeded" and job["route"]["lane"] == "inline"


def test_submit_wait_shows_progress_then_the_result(jobpipe, tmp_path):
    request = tmp_path / "input.json"
    request.write_text(json.dumps(LONG["input"]))
    done = jobpipe("submit", LONG["task"], "--input", str(request), "--wait", "60")
    assert done.returncode == cli.OK, done.stderr
    assert "status: succeeded" in done.stdout and '"summaries"' in done.stdout
    progress = done.stderr.splitlines()
    assert progress[0].split()[1] == "queued" and progress[-1].split()[1] == "succeeded"  # one line per state (not a tty)


def test_a_queued_job_is_waited_for_listed_and_read_back(jobpipe):
    queued = jobpipe("submit", LONG["task"], "--data", json.dumps(LONG["input"]), "--mode", "async")
    assert queued.returncode == cli.OK and "status: queued" in queued.stdout
    job_id = next(line.split()[1] for line in queued.stdout.splitlines() if line.startswith("id:"))
    assert f"jobpipe wait {job_id}" in queued.stderr

    done = jobpipe("wait", job_id, "--timeout", "60", "--json")
    assert done.returncode == cli.OK and json.loads(done.stdout)["status"] == "succeeded"
    assert jobpipe.json("get", job_id)["result"]["documents"] == 2

    other = jobpipe.json("submit", SHORT["task"], "--data", json.dumps(SHORT["input"]))
    page = jobpipe.json("list", "--limit", "1")
    assert [job["id"] for job in page["jobs"]] == [other["id"]] and page["next_cursor"]
    rest = jobpipe.json("list", "--limit", "1", "--cursor", page["next_cursor"])
    assert [job["id"] for job in rest["jobs"]] == [job_id]
    listed = jobpipe("list", "--all", "--limit", "1")
    assert listed.returncode == cli.OK and listed.stdout.splitlines()[0].split() == ["ID", "STATUS", "TASK", "LANE", "CREATED"]
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [other["id"], job_id]


def test_cancel_a_queued_job_then_its_wait_exits_1_and_a_second_cancel_3(jobpipe, standin):
    # Holds the only cpu worker with the first job for as long as the CLI calls below may take on a loaded
    # machine (each starts an interpreter): the held job must still be queued when it is canceled.
    standin(latency_s=20)
    blocker = jobpipe.json("submit", "documents.summarize", "--data", json.dumps({"documents": [{"id": "x", "text": "One."}]}))
    wait_until(lambda: jobpipe.json("get", blocker["id"])["status"] == "running", timeout_s=30, what="the first job running")
    held = jobpipe.json("submit", LONG["task"], "--data", json.dumps(LONG["input"]), "--mode", "async")

    ran_out = jobpipe("wait", held["id"], "--timeout", "1")
    assert ran_out.returncode == cli.STILL_RUNNING and "still queued" in ran_out.stderr

    canceled = jobpipe("cancel", held["id"])
    assert canceled.returncode == cli.OK and "status: canceled" in canceled.stdout
    waited = jobpipe("wait", held["id"], "--quiet")
    assert waited.returncode == cli.JOB_FAILED and "status: canceled" in waited.stdout and waited.stderr == ""
    again = jobpipe("cancel", held["id"], "--json")
    assert again.returncode == cli.REFUSED and "409 job_finished" in again.stderr
    assert json.loads(again.stdout)["error"]["status"] == "canceled"
    jobpipe("cancel", blocker["id"])  # frees the worker for the next test ...
    standin(release=True)  # ... now: its call answers, and its run sees the cancel


def test_errors_exit_with_their_codes_and_say_why(jobpipe, tmp_path):
    missing = jobpipe("get", "job_nosuchjob")
    assert missing.returncode == cli.REFUSED and "404 not_found" in missing.stderr and missing.stdout == ""
    unknown = jobpipe("submit", "no.such.task", "--data", "{}")
    assert unknown.returncode == cli.REFUSED and "unknown_task" in unknown.stderr
    invalid = jobpipe("submit", "claude.messages", "--data", '{"max_tokens": "many", "messages": []}', "--json")
    assert invalid.returncode == cli.REFUSED and json.loads(invalid.stdout)["error"]["field"].startswith("input.")

    not_json = jobpipe("submit", "claude.messages", "--data", "{oops")
    assert not_json.returncode == cli.USAGE and "not JSON" in not_json.stderr
    no_file = jobpipe("submit", "claude.messages", "--input", str(tmp_path / "absent.json"))
    assert no_file.returncode == cli.USAGE and "cannot read the input" in no_file.stderr
    no_command = jobpipe("submit")
    assert no_command.returncode == cli.USAGE
    unconfigured = jobpipe("tasks", env={"JOBPIPE_API_URL": "", "JOBPIPE_API_KEY": ""})
    assert unconfigured.returncode == cli.USAGE and "JOBPIPE_API_URL" in unconfigured.stderr


def test_an_api_that_is_down_or_silent_exits_5(jobpipe, silent):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    down = jobpipe("tasks", env={"JOBPIPE_API_URL": closed})
    assert down.returncode == cli.UNAVAILABLE and "could not connect" in down.stderr
    quiet = jobpipe("get", "job_1", "--request-timeout", "0.3", env={"JOBPIPE_API_URL": silent.url})
    assert quiet.returncode == cli.UNAVAILABLE and "no answer within 0.3 s" in quiet.stderr


# --- without the pipeline: main(argv) against a scripted server ------------------------------------


def run_main(*argv: str, url: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOBPIPE_API_URL", url)
        patch.setenv("JOBPIPE_API_KEY", "k")
        code = cli.main(list(argv), stdin=io.StringIO(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_json_may_come_before_or_after_the_command(scripted):
    server = scripted((200, {"tasks": [{"name": "t", "route": {"lane": "cpu"}}]}))
    for argv in (["--json", "tasks"], ["tasks", "--json"]):
        code, out, _ = run_main(*argv, url=server.url)
        assert code == cli.OK and json.loads(out)["tasks"][0]["name"] == "t"


def test_progress_shows_each_state_once_then_the_failed_job_exits_1(scripted):
    queued = {"id": "job_1", "task": "t", "status": "queued", "route": {"lane": "cpu", "reason": "r"}}
    failed = {**queued, "status": "failed", "error": {"type": "model_rejected", "message": "refused"}}
    server = scripted((202, queued), (200, queued), (200, {**queued, "status": "running"}), (200, failed))
    server.delay_s = 0.05
    code, out, err = run_main("submit", "t", "--data", "{}", "--wait", "60", url=server.url)
    assert code == cli.JOB_FAILED and "error:  model_rejected: refused" in out
    assert [line.split()[1] for line in err.splitlines()] == ["queued", "running", "failed"]


def test_usage_prints_the_callers_usage_with_a_bar_chart_and_json_for_scripts(jobpipe):
    assert jobpipe("submit", SHORT["task"], "--input", "-", stdin=json.dumps(SHORT["input"])).returncode == cli.OK
    report = jobpipe.json("usage", "--group-by", "task")
    (row,) = [group for group in report["groups"] if group["task"] == SHORT["task"]]
    assert row["jobs"]["succeeded"] >= 1 and row["cost_usd"] > 0
    done = jobpipe("usage", "--group-by", "task")
    assert done.returncode == cli.OK, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("usage ") and lines[1].split()[:2] == ["TASK", "JOBS"]
    (line,) = [line for line in lines if line.startswith(SHORT["task"])]
    assert "█" in line and lines[-1].startswith("total: ")


def test_a_bar_is_its_share_of_the_width_in_eighths():
    assert (cli.bar(1.0, width=4), cli.bar(0.0, width=4), cli.bar(0.5, width=4), cli.bar(1 / 32, width=4)) == ("████", "", "██", "▏")
