"""A local server in a process of its own: ``python -m <module> --port 0 ...``, which prints its URL once it listens.

The local runtime's servers share one interpreter lock when they run as threads of one process. Where a
measurement must not time that sharing (the capacity bench: the model stand-in; the local AWS's DynamoDB under a
300-job burst), a server runs this way instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10.0


class ServerProcess:
    """``python -m module *args`` from the repository's root: ``start()`` returns once it printed its URL (``url``),
    ``stop()`` terminates it (killed if still running after ``STOP_TIMEOUT_S``)."""

    def __init__(self, module: str, args: list[str], *, env: dict[str, str] | None = None, name: str | None = None):
        self._command = [sys.executable, "-m", module, *args]
        self._env = env
        self._name = name or module
        self._process: subprocess.Popen[str] | None = None
        self._url: str | None = None

    def start(self) -> Self:
        if self._process is None:
            self._process = subprocess.Popen(self._command, cwd=ROOT, env=self._env, stdout=subprocess.PIPE, text=True)
            assert self._process.stdout is not None
            line = self._process.stdout.readline().strip()  # the server prints its URL once it listens
            if not line.startswith("http://"):
                self.stop()
                raise RuntimeError(f"the {self._name} process did not start (it printed {line!r})")
            self._url = line
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = self._url = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError(f"the {self._name} process is not started")
        return self._url
