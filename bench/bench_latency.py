"""Start-up, round trips and throughput in one run: router cold and warm overhead, AWS calls per job by path, worker
throughput beside a minimal reference consumer, and the idle-lane wake call.

    python -m bench.bench_latency [--quick] [--out FILE]

Each section (bench/report.py) measures its own thing and states each goal and whether this run met
it; ``--out`` also writes the markdown (bench/README.md quotes the last run). It never fails a build.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from bench.report import Section, publish

# In the order the README reports them: what a caller waits for first comes first.
SECTIONS = ("bench.bench_coldstart", "bench.bench_calls", "bench.bench_worker", "bench.bench_wake")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and jobs: a smoke run, not the figures")
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sections: list[Section] = []
    for name in args.only or SECTIONS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        sections.append(importlib.import_module(name).section(quick=args.quick))
    publish(sections, quick=args.quick, started=started, out=args.out)
    missed = [g.name for s in sections for g in s.goals if not g.met]
    print(f"goals missed: {len(missed)}" + (f" ({'; '.join(missed)})" if missed else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
