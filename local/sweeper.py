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

log = logging.getLogger("sweeper")


def main() -> None:
    stop = start_process()
    settings = SweeperSettings.from_env(os.environ)
    sweeper, letters = build_sweeper(settings, AwsClients.create(settings.jobs_table))
    log.info("sweeper every %g s over %s", settings.sweep_every_s, ", ".join(letters))
    while not stop.wait(settings.sweep_every_s):
        try:
            report = sweeper.sweep()
            for lane, queue in letters.items():
                sweeper.drain(queue, lane=lane, report=report)
        except Exception:  # noqa: BLE001 - a failed round is logged; the next one tries again
            log.exception("sweep failed")
            continue
        if report:
            log.warning("settled: %s", report)


if __name__ == "__main__":
    main()
