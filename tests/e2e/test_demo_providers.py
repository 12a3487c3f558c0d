"""``make demo ARGS="--providers bedrock"``: the demo's jobs run through the anthropic SDK's Bedrock client (the
stand-in counts the calls on its Bedrock runtime path, none on the Anthropic API's), with no Anthropic key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_demo_with_bedrock_alone_makes_every_model_call_through_bedrock():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("lambda_src", "container_src", ".")),
           "ANTHROPIC_API_KEY": "sk-must-not-be-used"}  # in the environment, and still read by nothing
    done = subprocess.run([sys.executable, "-m", "local.demo", "--providers", "bedrock"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = re.search(r"answered (\d+) Messages API requests .* and (\d+) Bedrock InvokeModel requests", done.stdout)
    assert found is not None, done.stdout[-2000:]
    assert int(found.group(1)) == 0 and int(found.group(2)) >= 3  # the inline, the queued and the intake job's calls
    assert "demo succeeded" in done.stdout
