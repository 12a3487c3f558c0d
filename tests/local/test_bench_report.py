"""The benches' shared report helpers (bench/report.py): timestamps, and a run's header, printed and written."""

from __future__ import annotations

import platform
import re
import time

from bench.bench_capacity import span_s
from bench.report import Goal, Section, epoch_s, publish


def test_an_api_timestamp_is_seconds_since_the_epoch():
    assert epoch_s("1970-01-01T00:00:01Z") == 1.0
    assert epoch_s("2026-01-01T00:00:00.250Z") - epoch_s("2026-01-01T00:00:00Z") == 0.25


def test_the_capacity_bench_spans_first_creation_to_last_finish_in_seconds():
    jobs = [{"created_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:30Z"},
            {"created_at": "2026-01-01T00:00:10Z", "finished_at": None}]
    assert span_s(jobs) == 30.0


def test_publish_prints_and_writes_one_report_with_the_run_s_header(tmp_path, capsys):
    sections = [Section("One", [Goal("a goal", "1", True)])]
    out = tmp_path / "report.md"
    report = publish(sections, quick=True, started=time.perf_counter(), out=str(out), detail="the stand-in at 60 RPM",
                     note="No admission.")
    assert out.read_text(encoding="utf-8") == report and report in capsys.readouterr().out
    head = report.splitlines()[0]
    assert re.fullmatch(rf"Run \d{{4}}-\d\d-\d\d on {re.escape(platform.machine())}, Python "
                        rf"{re.escape(platform.python_version())}, quick run, \d+ s in all; the stand-in at 60 RPM\. "
                        r"No admission\.", head), head
    assert "## One" in report
    plain = publish(sections, quick=False, started=time.perf_counter(), out=None).splitlines()[0]
    assert re.fullmatch(r"Run .*, full run, \d+ s in all\.", plain), plain
