"""The batch collector as a process of the local runtime: ``python -m local.collector``.

What the EventBridge schedule does in AWS: run one :meth:`jobcore.batches.Collector.collect` pass (the same code
as the Lambda, :mod:`collector.handler`) every ``COLLECT_EVERY_S`` seconds (1 s locally) until SIGTERM.
"""

from __future__ import annotations

import logging
import os

from jobadapters.process import start_process
from jobadapters.settings import CollectorSettings
from jobadapters.wiring import AwsClients, build_collector
from local.schedule import every

log = logging.getLogger("collector")


def main() -> None:
    stop = start_process()
    settings = CollectorSettings.from_env(os.environ)
    collector = build_collector(settings, AwsClients.create(settings.jobs_table, shards=settings.index_shards),
                                keep_going=lambda: not stop.is_set())
    log.info("collector every %g s on the %s lane (window %d s)", settings.collect_every_s, settings.lane, settings.window_s)
    every(stop, settings.collect_every_s, collector.collect, log=log, what="collect")


if __name__ == "__main__":
    main()
