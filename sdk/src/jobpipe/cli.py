"""``jobpipe``: the job API from the shell, on the SDK.

    jobpipe tasks
    jobpipe submit claude.messages --input request.json --wait
    jobpipe list --status failed
    jobpipe configure --stack JobPipeline-dev-Service

The endpoint and key come from ``JOBPIPE_API_URL`` and ``JOBPIPE_API_KEY``, else from the file
``jobpipe configure`` writes. ``--json`` prints what the API returned, for scripts.
"""

from __future__ import annotations

import argparse
import builtins
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from jobpipe._http import Timeout
from jobpipe._version import __version__
from jobpipe.client import DEFAULT_WAIT_S, Client
from jobpipe.config import ConfigurationError, config_path, read_config, write_config
from jobpipe.errors import APIConnectionError, APIError, JobpipeError, WaitTimeoutError
from jobpipe.models import Job

# What the exit status means (also in `jobpipe --help`).
OK = 0  # done; for --wait and `wait`: the job succeeded
JOB_FAILED = 1  # the job finished without succeeding: failed, canceled, expired, timed_out
USAGE = 2  # bad arguments, an unreadable input, no configuration
REFUSED = 3  # the API refused the request (4xx): invalid input, unknown task or job, already finished...
STILL_RUNNING = 4  # --wait / wait: the job had not finished when the time ran out
UNAVAILABLE = 5  # the API could not be reached, timed out, or failed (5xx): try again later
INTERRUPTED = 130

EXIT_CODES = f"""exit status:
  {OK}  done (with --wait or the wait command: the job succeeded)
  {JOB_FAILED}  the job finished without succeeding (failed, canceled, expired, timed_out)
  {USAGE}  bad arguments, an unreadable input file, or no API URL/key configured
  {REFUSED}  the API refused the request (4xx: invalid input, unknown task or job, already finished)
  {STILL_RUNNING}  the wait ran out before the job finished (it goes on: jobpipe wait ID waits again)
  {UNAVAILABLE}  the API could not be reached, did not answer in time, or failed (5xx)
"""


class UsageError(Exception):
    pass


def main(argv: Sequence[str] | None = None, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
         stderr: IO[str] | None = None) -> int:
    """Run one command; its exit status (see EXIT_CODES)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse's --help (0) and its usage errors (2)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(out)
        return USAGE
    cli = Cli(args, stdin=stdin or sys.stdin, out=out, err=err)
    try:
        return int(args.run(cli))
    except UsageError as error:
        print(f"jobpipe: {error}", file=err)
        return USAGE
    except ConfigurationError as error:
        print(f"jobpipe: {error}", file=err)
        return USAGE
    except WaitTimeoutError as error:
        job = error.job if isinstance(error.job, Job) else None
        if job is not None and args.json:
            cli.emit_json(job)
        print(f"jobpipe: {error}; it goes on: `jobpipe wait {error.job_id}` to wait again", file=err)
        return STILL_RUNNING
    except APIConnectionError as error:  # APITimeoutError included
        print(f"jobpipe: {error}", file=err)
        return UNAVAILABLE
    except APIError as error:
        if args.json and isinstance(error.body, dict):
            cli.emit_json(error.body)
        print(f"jobpipe: {describe_error(error)}", file=err)
        return UNAVAILABLE if error.status_code is None or error.status_code >= 500 else REFUSED
    except JobpipeError as error:
        print(f"jobpipe: {error}", file=err)
        return UNAVAILABLE
    except KeyboardInterrupt:
        print("jobpipe: interrupted", file=err)
        return INTERRUPTED


def run() -> None:
    """The console script."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `jobpipe list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # as a shell reports a process killed by SIGPIPE
    sys.exit(code)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the API's JSON on stdout (for scripts); messages go to stderr")
    common.add_argument("--api-url", default=argparse.SUPPRESS, help="the API's base URL (default: $JOBPIPE_API_URL, "
                        "then the config file)")
    common.add_argument("--request-timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="seconds to wait for each answer of the API (default: 35; a long poll adds its wait)")

    # The module's docstring, examples included, without its reST literal markers: --help is plain text.
    parser = argparse.ArgumentParser(prog="jobpipe", description=(__doc__ or "").replace("``", ""),
                                     parents=[common], epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"jobpipe {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, run: Callable[[Cli], int], help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_, description=help_, epilog=EXIT_CODES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(command=name, run=run)
        return sub

    submit = command("submit", Cli.submit, "submit a job; prints it (inline: finished; else queued, or --wait for it)")
    submit.add_argument("task", help="the task's name (jobpipe tasks lists them)")
    source = submit.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", "-i", metavar="FILE|-", help="the task's input: a JSON file, or - for stdin")
    source.add_argument("--data", "-d", metavar="JSON", help="the task's input as a JSON string")
    source.add_argument("--input-upload", metavar="UPLOAD_ID", help="an upload's id (POST /v1/uploads) in place of the input")
    submit.add_argument("--mode", choices=["auto", "sync", "async", "batch"], help="where it may run (default: auto)")
    submit.add_argument("--webhook", metavar="URL", help="POST the finished job to this URL (signed)")
    submit.add_argument("--event", action="append", dest="events", metavar="EVENT",
                        help="a webhook event (succeeded, failed, ...; default: completed, every end); repeatable")
    submit.add_argument("--metadata", "-m", action="append", metavar="KEY=VALUE", help="a label kept with the job; repeatable")
    submit.add_argument("--max-queue", type=float, metavar="SECONDS", help="expire the job if not started within this long")
    submit.add_argument("--idempotency-key", metavar="KEY", help="the same key and input return the same job (default: a new key)")
    add_wait(submit, "--wait", "wait for the job to finish, showing its progress, then print it")

    get = command("get", Cli.get, "print a job")
    get.add_argument("job_id", metavar="JOB_ID")
    get.add_argument("--wait", type=float, metavar="SECONDS", help="long poll: answer as soon as it finishes (≤ 20 s)")

    wait = command("wait", Cli.wait, "wait for a job to finish, showing its progress, then print it")
    wait.add_argument("job_id", metavar="JOB_ID")
    wait.add_argument("--timeout", dest="wait_s", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                      help=f"give up after this long (default: {DEFAULT_WAIT_S:g}); exit {STILL_RUNNING}")
    wait.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")

    listing = command("list", Cli.list, "list your jobs, newest first")
    listing.add_argument("--status", choices=["queued", "running", "canceling", "succeeded", "failed", "canceled", "expired",
                                              "timed_out"])
    listing.add_argument("--limit", type=int, default=20, metavar="N", help="jobs per page (1 to 100; default 20)")
    listing.add_argument("--cursor", help="the page after this one (the previous page's next_cursor)")
    listing.add_argument("--source", metavar="S3_URL", help="only the jobs of this S3 intake object (s3://bucket/key)")
    listing.add_argument("--all", action="store_true", help="every page, not just the first")

    cancel = command("cancel", Cli.cancel, "cancel a job (queued: at once; running: its worker stops it)")
    cancel.add_argument("job_id", metavar="JOB_ID")

    command("tasks", Cli.tasks, "list the tasks, where each typically runs and why")

    usage = command("usage", Cli.usage, "your usage by day, task or lane: jobs, tokens, cost, with a bar chart")
    usage.add_argument("--from", dest="from_", metavar="YYYY-MM-DD", help="first day (UTC; default: the 1st of this month)")
    usage.add_argument("--to", metavar="YYYY-MM-DD", help="last day (UTC; default: today)")
    usage.add_argument("--group-by", choices=["day", "task", "lane"], default="day")

    configure = command("configure", Cli.configure,
                        "save the API URL and key: from a deployed service stack (boto3), or given by hand")
    configure.add_argument("--stack", help="the service stack's name, e.g. JobPipeline-dev-Service (its ApiUrl and ApiKeyId "
                           "outputs; the key's value from API Gateway)")
    configure.add_argument("--region", help="the stack's AWS region (default: the profile's or AWS_REGION)")
    configure.add_argument("--profile", help="the AWS profile to use (default: the usual credentials chain)")
    configure.add_argument("--api-key", help="with --api-url instead of --stack: the key to save")
    configure.add_argument("--show", action="store_true", help="print what is configured now (the key masked)")
    return parser


def add_wait(parser: argparse.ArgumentParser, flag: str, help_: str) -> None:
    parser.add_argument(flag, nargs="?", type=float, const=DEFAULT_WAIT_S, default=None, dest="wait_s", metavar="SECONDS",
                        help=f"{help_} (at most SECONDS, default {DEFAULT_WAIT_S:g}; exit {STILL_RUNNING} if it runs out)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr while waiting")


class Cli:
    def __init__(self, args: argparse.Namespace, *, stdin: IO[str], out: IO[str], err: IO[str]):
        self.args = args
        self.stdin, self.out, self.err = stdin, out, err
        self.json = bool(getattr(args, "json", False))
        args.json = self.json

    def client(self) -> Client:
        timeout = getattr(self.args, "request_timeout", None)
        return Client(getattr(self.args, "api_url", None), None,
                      timeout=None if timeout is None else Timeout(connect=min(timeout, 5.0), read=timeout))

    # --- commands ----------------------------------------------------------------------------------

    def submit(self) -> int:
        args = self.args
        client = self.client()
        progress = self.progress() if args.wait_s is not None else None
        try:
            job = client.jobs.create(
                args.task, None if args.input_upload else self.read_input(), input_upload=args.input_upload, mode=args.mode,
                webhook=None if args.webhook is None else {"url": args.webhook, **({"events": args.events} if args.events else {})},
                metadata=parse_metadata(args.metadata), max_queue_s=args.max_queue, idempotency_key=args.idempotency_key,
                wait=args.wait_s, on_update=progress.update if progress else None)
        finally:
            if progress:
                progress.stop()
        self.show_job(job)
        if args.wait_s is None:
            if not job.terminal and not self.json:
                print(f"queued: `jobpipe wait {job.id}` waits for it", file=self.err)
            return JOB_FAILED if job.terminal and not job.succeeded else OK
        return outcome(job)

    def get(self) -> int:
        self.show_job(self.client().jobs.get(self.args.job_id, wait=self.args.wait))
        return OK

    def wait(self) -> int:
        progress = self.progress()
        try:
            job = self.client().jobs.wait(self.args.job_id, timeout=self.args.wait_s, on_update=progress.update)
        finally:
            progress.stop()
        self.show_job(job)
        return outcome(job)

    def list(self) -> int:
        args = self.args
        jobs = self.client().jobs.list(status=args.status, limit=args.limit, cursor=args.cursor, source=args.source)
        shown: list[Job] = []
        next_cursor = None
        for page in jobs.pages():
            shown += page.jobs
            next_cursor = page.next_cursor
            if not args.all:
                break
        if self.json:
            self.emit_json({"jobs": shown, "next_cursor": next_cursor})
            return OK
        rows = [[job.id, job.status, job.task or "", job.lane or "", job.get("created_at", "")] for job in shown]
        self.table(["ID", "STATUS", "TASK", "LANE", "CREATED"], rows)
        if not shown:
            print("no jobs", file=self.err)
        if next_cursor:
            print(f"more: jobpipe list --cursor {next_cursor}" + (f" --limit {args.limit}" if args.limit != 20 else ""), file=self.err)
        return OK

    def cancel(self) -> int:
        job = self.client().jobs.cancel(self.args.job_id)
        self.show_job(job)
        if job.status == "canceling" and not self.json:
            print(f"canceling: its worker stops it within seconds; `jobpipe wait {job.id}` confirms", file=self.err)
        return OK

    def tasks(self) -> int:
        tasks = self.client().tasks.list()
        if self.json:
            self.emit_json({"tasks": tasks})
            return OK
        rows = [[task.get("name", ""), (task.get("route") or {}).get("lane") or "-", task.get("description", "")] for task in tasks]
        self.table(["TASK", "RUNS ON", "DESCRIPTION"], rows)
        return OK

    def usage(self) -> int:
        report = self.client().usage.get(from_=self.args.from_, to=self.args.to, group_by=self.args.group_by)
        if self.json:
            self.emit_json(report)
            return OK
        key = report.get("group_by", "day")
        groups = report.get("groups") or []
        most = max((group.get("cost_usd", 0) for group in groups), default=0) or 1
        rows = [[group.get(key, ""), group["jobs"]["total"], group["tokens"]["input"], group["tokens"]["output"],
                 f"{group.get('cost_usd', 0):.6f}", bar(group.get("cost_usd", 0) / most)] for group in groups]
        total = report.get("total") or {}
        print(f"usage {report.get('from')} to {report.get('to')}, by {key}", file=self.out)
        self.table([key.upper(), "JOBS", "IN TOKENS", "OUT TOKENS", "COST USD", ""], rows)
        if total:
            print(f"total: {total['jobs']['total']} jobs, {total['model_calls']} model calls, "
                  f"{total['compute_s']:g} s of compute, {total['cost_usd']:.6f} USD", file=self.out)
        budget = report.get("budget")
        if budget:
            print(f"budget: {budget['month_spent_usd']:.6f} of {budget['monthly_usd']:g} USD spent this month, "
                  f"{budget['remaining_usd']:.6f} left  {bar(budget['month_spent_usd'] / (budget['monthly_usd'] or 1))}",
                  file=self.out)
        return OK

    def configure(self) -> int:
        args = self.args
        path = config_path()
        if args.show:
            stored = read_config(path)
            shown = {**stored, "api_key": mask(stored["api_key"])} if stored.get("api_key") else stored
            if self.json:
                self.emit_json({"path": str(path), **shown})
            else:
                print(f"{path}: " + (", ".join(f"{k}={v}" for k, v in shown.items()) or "nothing configured"), file=self.out)
            return OK
        if args.stack:
            from jobpipe.configure import from_stack

            deployed = from_stack(args.stack, region=args.region, profile=args.profile)
            settings: dict[str, Any] = {"api_url": deployed.api_url, "api_key": deployed.api_key, "stack": deployed.stack,
                                        "region": deployed.region, "api_key_id": deployed.api_key_id}
        elif getattr(args, "api_url", None) and args.api_key:
            settings = {"api_url": args.api_url, "api_key": args.api_key}
        else:
            raise UsageError("configure needs --stack NAME (a deployed service stack), or --api-url URL and --api-key KEY")
        write_config(path, {k: v for k, v in settings.items() if v is not None})
        if self.json:
            self.emit_json({"path": str(path), **settings, "api_key": mask(settings["api_key"])})
        else:
            print(f"saved {settings['api_url']} and its API key to {path} (mode 0600)", file=self.out)
            overridden = [name for name in ("JOBPIPE_API_URL", "JOBPIPE_API_KEY") if os.environ.get(name)]
            if overridden:
                print(f"note: {' and '.join(overridden)} set in this shell take precedence over the file", file=self.err)
            print("next: jobpipe tasks", file=self.err)
        return OK

    # --- input and output --------------------------------------------------------------------------

    def read_input(self) -> Any:
        args = self.args
        if args.data is not None:
            text, where = args.data, "--data"
        elif args.input == "-":
            text, where = self.stdin.read(), "stdin"
        else:
            try:
                text, where = Path(args.input).read_text(encoding="utf-8"), args.input
            except (OSError, UnicodeDecodeError) as error:
                raise UsageError(f"cannot read the input {args.input}: {error}") from None
        try:
            return json.loads(text)
        except ValueError as error:
            raise UsageError(f"the input ({where}) is not JSON: {error}") from None

    def progress(self) -> Progress:
        quiet = self.args.quiet
        return Progress(self.err, enabled=not quiet, animate=not quiet and self.err.isatty())

    def emit_json(self, document: Any) -> None:
        json.dump(document, self.out, indent=2, ensure_ascii=False)
        self.out.write("\n")
        self.out.flush()

    def show_job(self, job: Job) -> None:
        if self.json:
            self.emit_json(job)
            return
        lines = [("id", job.id), ("task", job.task or ""), ("status", job.status)]
        if job.lane or job.route_reason:
            lines.append(("route", f"{job.lane or '-'} ({job.route_reason})" if job.route_reason else str(job.lane)))
        if job.get("waiting"):
            lines.append(("waiting", job["waiting"]))
        timing = [f"created {job['created_at']}"] if job.get("created_at") else []
        if job.get("finished_at"):
            timing.append(f"finished {job['finished_at']}")
        if job.get("duration_ms") is not None:
            timing.append(f"ran {job['duration_ms']} ms")
        if timing:
            lines.append(("time", ", ".join(timing)))
        if job.error:
            lines.append(("error", f"{job.error.get('type')}: {job.error.get('message')}"))
        cost = job.get("cost") or {}
        if isinstance(cost, dict) and cost.get("actual", {}).get("total") is not None:
            lines.append(("cost", f"{cost['actual']['total']} {cost['actual'].get('currency', '')}".strip()))
        if job.result_url and job.result is None:
            lines.append(("result_url", job.result_url))
        width = max(len(name) for name, _ in lines)
        for name, value in lines:
            print(f"{name + ':':<{width + 1}} {value}", file=self.out)
        if job.result is not None:
            print("result:", file=self.out)
            print(json.dumps(job.result, indent=2, ensure_ascii=False), file=self.out)
        elif job.get("result_status") == "expired":
            print("result: expired (past its retention)", file=self.out)

    def table(self, header: builtins.list[str], rows: builtins.list[builtins.list[Any]]) -> None:
        if not rows:
            return
        cells = [header, *[[str(value) for value in row] for row in rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
        for row in cells:
            print("  ".join([*(value.ljust(widths[i]) for i, value in enumerate(row[:-1])), row[-1]]).rstrip(), file=self.out)


def outcome(job: Job) -> int:
    if job.succeeded:
        return OK
    return JOB_FAILED if job.terminal else STILL_RUNNING


def describe_error(error: APIError) -> str:
    text = str(error)
    if error.field and error.field not in error.message:
        text += f" (field: {error.field})"
    if error.job_id:
        text += f"; the job was recorded: jobpipe get {error.job_id}"
    if error.retry_after is not None:
        text += f"; retry after {error.retry_after:g} s"
    return text


def parse_metadata(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    metadata = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals:
            raise UsageError(f"--metadata takes KEY=VALUE, not {pair!r}")
        metadata[key] = value
    return metadata


def bar(share: float, width: int = 24) -> str:
    """A bar of ``share`` (0 to 1) of ``width`` cells, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, share)) * width * 8)
    return "█" * (eighths // 8) + ("" if eighths % 8 == 0 else " ▏▎▍▌▋▊▉"[eighths % 8])


def mask(secret: str) -> str:
    return secret[:4] + "…" if len(secret) > 8 else "…"


class Progress:
    """While a job is waited on: a spinner with its state and the seconds spent (a terminal), or one line
    per change of state (a pipe or a file), on stderr."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, stream: IO[str], *, enabled: bool, animate: bool):
        self.stream = stream
        self.enabled = enabled
        self.animate = animate
        self.started = time.monotonic()
        self.text = "submitting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if enabled and animate:
            self._thread = threading.Thread(target=self._spin, name="jobpipe-spinner", daemon=True)
            self._thread.start()

    def update(self, job: Job) -> None:
        text = f"{job.id} {job.status}" + (f" ({job.lane})" if job.lane else "")
        if text == self.text:
            return
        self.text = text
        if self.enabled and not self.animate:
            print(f"{self.text} after {time.monotonic() - self.started:.1f} s", file=self.stream, flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _spin(self) -> None:
        for frame in itertools.cycle(self.FRAMES):
            if self._stop.wait(0.1):
                return
            self.stream.write(f"\r\033[K{frame} {self.text} {time.monotonic() - self.started:.0f} s")
            self.stream.flush()


if __name__ == "__main__":
    run()
