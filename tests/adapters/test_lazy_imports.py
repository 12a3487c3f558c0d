"""Cold starts: importing the router (and the task catalogue) or the webhook dispatcher loads no heavy library.

Checked in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imported where a job runs, never at import time: the anthropic SDK (jobadapters.claude imports it
# when the first call is made), and the embedding task's runtime (the gpu lane's worker loads
# jobadapters.embeddings; the router Lambda's bundle does not even contain these).
HEAVY = ("anthropic", "numpy", "onnxruntime", "tokenizers", "onnx")

PROBE = f"""
import sys
import router.handler, jobcore.tasks
loaded = sorted(name for name in {HEAVY!r} if name in sys.modules)
assert not loaded, f"imported at import time: {{loaded}}"
from jobcore.tasks.base import load_executor
assert load_executor.cache_info().currsize == 0, "an executor was loaded at import time"
# What the router does with a task it queues (validate, estimate, route) loads nothing heavy either.
spec = jobcore.tasks.CATALOGUE["embeddings.encode"]
spec.expected_duration_s(spec.validate({{"texts": ["a", "b"]}}))
loaded = sorted(name for name in {HEAVY!r} if name in sys.modules)
assert not loaded, f"imported by validating an embeddings job: {{loaded}}"
"""


def test_importing_the_router_and_the_catalogue_imports_neither_the_sdk_nor_the_embedding_runtime():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}

    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr


DISPATCHER_PROBE = f"""
import sys
import dispatcher.handler
loaded = sorted(name for name in {HEAVY!r} if name in sys.modules)
assert not loaded, f"imported at import time: {{loaded}}"
"""


def test_importing_the_webhook_dispatcher_does_not_import_the_anthropic_sdk():
    """The dispatcher Lambda never calls Claude, though it shares the wiring module with the router."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}

    done = subprocess.run([sys.executable, "-c", DISPATCHER_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
