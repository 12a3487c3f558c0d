"""Run a local component's module with its AWS calls recorded: ``python -m local.recorded <component> <module>``.

The local pipeline starts its processes this way when it records calls (``Options.aws_calls_dir``): the recorder
is installed on boto3's default session before the module makes a client, then the module runs as ``__main__``.
"""

from __future__ import annotations

import runpy
import sys

from local.aws_calls import record_process


def main(argv: list[str]) -> None:
    component, module = argv
    record_process(component)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
