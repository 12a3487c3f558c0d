"""SIGTERM/SIGINT reach a process's stop event without deadlocking it, however many arrive and whenever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The main thread waits on the stop event in a tight loop (as the sweeper and the worker's watcher do), so
# signals land while it holds the event's lock; a handler that called stop.set() there would hang forever.
CHILD = textwrap.dedent("""
    import time
    from jobadapters.process import stop_on_signals
    stop = stop_on_signals()
    print("ready", flush=True)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # keeps waiting after the first signal: every later one lands here too
        stop.wait(0.00001)
    print("stopped" if stop.is_set() else "running", flush=True)
""")


def run_child() -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambda_src")}
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_a_stream_of_signals_stops_the_process_and_never_hangs_it():
    for _ in range(5):
        child = run_child()
        # The burst goes on until the child has exited, so signals land in its loop, after its event is set,
        # and while it shuts down (a closed wakeup fd there used to hang it about one exit in three).
        end = time.monotonic() + 10
        while child.poll() is None and time.monotonic() < end:
            child.send_signal(signal.SIGTERM)
            child.send_signal(signal.SIGINT)
            time.sleep(0.0002)
        try:
            # A deadlock never ends; 60 s only tells it from a child starved of CPU on a loaded machine.
            out, err = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            raise AssertionError("the process hung on its stop signals") from None
        assert out.strip() == "stopped"
        assert "wakeup fd" not in err  # every signal reached an open wakeup socket
        # 0, or a signal of the burst that arrived after the interpreter restored the default handlers on exit
        assert child.returncode in {0, -signal.SIGTERM, -signal.SIGINT}


def test_one_sigterm_is_enough():
    child = run_child()
    time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=10)
    assert out.strip() == "stopped"


def test_the_worker_logs_a_json_object_a_line_with_the_keys_the_lambdas_log():
    """GIVEN a process started as the worker starts (``start_process(json_service="worker")``)
    WHEN it logs a line, and an exception
    THEN each is one JSON object with Powertools' keys, the traceback in ``exception``."""
    script = textwrap.dedent("""
        import logging
        from jobadapters.process import start_process
        start_process(json_service="worker")
        log = logging.getLogger("worker.poller")
        log.info("job %s: it's \\"done\\" ✓", "job_1")
        try:
            raise KeyError("gone")
        except KeyError:
            log.exception("job %s failed", "job_2")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambda_src"), "LOG_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["level"], e["message"], e["service"], e["logger"]) for e in lines] == [
        ("INFO", 'job job_1: it\'s "done" ✓', "worker", "worker.poller"), ("ERROR", "job job_2 failed", "worker", "worker.poller")]
    assert all(set(e) >= {"level", "location", "message", "timestamp", "service"} for e in lines)
    assert lines[1]["exception_name"] == "KeyError" and "Traceback" in lines[1]["exception"] and "exception" not in lines[0]
    assert lines[0]["timestamp"].endswith("Z") and lines[0]["location"].startswith("<module>:")
