"""The sweeper as a process of the local runtime: ``python -m local.sweeper``.

What the EventBridge schedule does in AWS: run :mod:`jobcore.sweeper` (the same code as the Lambda,
:mod:`sweeper.handler`) every ``SWEEP_EVERY_S`` seconds until SIGTERM.
"""

from __future__ import annotations

import logging
import os

from jobadapters.process import start_process
from jobadapters.settings import SweeperSettings
from jobadapters.wiring import AwsClients, build_sweeper
from local.schedule import every

log = logging.getLogger("sweeper")


def main() -> None:
    stop = start_process()
    settings = SweeperSettings.from_env(os.environ)
    sweeper, letters = build_sweeper(settings, AwsClients.create(settings.jobs_table, shards=settings.index_shards))
    log.info("sweeper every %g s over %s", settings.sweep_every_s, ", ".join(letters))

    def sweep_and_drain() -> object:
        report = sweeper.sweep()
        for lane, queue in letters.items():
            sweeper.drain(queue, lane=lane, report=report)
        return report

    every(stop, settings.sweep_every_s, sweep_and_drain, log=log, what="settled", level=logging.WARNING)


if __name__ == "__main__":
    main()
