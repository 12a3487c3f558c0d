"""Every command of README.md's and docs/*.md's ``bash`` blocks, as a newcomer runs it from a fresh clone.

A block tagged ```` ```bash aws ```` needs an AWS account (``npx cdk deploy``, ``aws ...``), one tagged ```` ```bash
network ```` the package index: each is checked to parse (``bash -n``, its ``<placeholders>`` filled in) and, for
AWS, to be of a known AWS form. ``make test``, ``make demo``, ``make lint`` and ``make synth`` are what CI runs
(``.ci/run``: checked to be there, not run from inside the tests). ``make serve`` is the pipeline this module starts
(its recipe is checked to be ``python -m local.serve``). Every other block runs in its own ``bash -euo pipefail``
(another shell, as the README says) against that pipeline, in the environment the README's blocks set up (``API``,
``KEY``, ``JOBPIPE_API_URL``, the virtualenv's PATH), with two changes: the pipeline listens on free ports, so
``make serve``'s fixed ones in the text are rewritten to them, and the placeholders ``job_...`` (a job queued in the
batch lane, which holds it) and ``<standin-port>`` are filled in. A block passes when it exits 0 and no answer in
its output is an error that means the command was wrong (an unknown route, a bad body).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from local import client
from local.serve import API_PORT, AWS_PORT, WEBHOOK_PORT

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The batch lane holds its jobs for the window: a job there stays queued while the blocks use it.
PIPELINE_ARGS = ("--context", json.dumps({"batch_window_s": 3600}))
CI_TARGETS = frozenset({"make test", "make demo", "make lint", "make synth"})
AWS_FORMS = (
    r"aws [a-z0-9-]+ [a-z0-9-]+( |$)",  # aws <service> <operation>
    r"npx cdk (deploy|destroy|bootstrap|synth|diff)( |$)",
    r"jobpipe configure --stack ",
)
# An answer with one of these types says the command was wrong, not that the job did something expected.
WRONG = ("bad_request", "invalid_input", "not_found", "unknown_task", "INVALID_API_KEY", "internal_error",
         "DEFAULT_5XX", "INTEGRATION_TIMEOUT", "misconfigured")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    tags: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def lines(self) -> list[str]:
        """Its commands without comments, a line per command (continuations joined), as far as a line can say."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^( *)```(bash|sh|shell)([^\n]*)\n(.*?)^\1```", text, re.M | re.S):
            body = "\n".join(line.removeprefix(match.group(1)) for line in match.group(4).splitlines())
            found.append(Block(path, text[:match.start()].count("\n") + 1, tuple(match.group(3).split()), body))
    return found


BLOCKS = blocks()
OFFLINE = [b for b in BLOCKS if {"aws", "network"} & set(b.tags)]
RUN = [b for b in BLOCKS if b not in OFFLINE and not set(b.lines()) <= CI_TARGETS | {"make serve"}]


def test_the_docs_have_blocks_of_every_kind():
    assert len(BLOCKS) > 10 and OFFLINE and RUN


@pytest.mark.parametrize("block", OFFLINE, ids=lambda b: b.where)
def test_a_block_that_needs_aws_or_the_network_parses_and_its_aws_commands_are_known_forms(block):
    # ``<JobBucketName>``, ``<commit sha>``: what the reader fills in (as written, bash would read a redirection)
    filled = re.sub(r"<[A-Za-z][^<>\n]*>", "PLACEHOLDER", block.text)
    parsed = subprocess.run(["bash", "-n"], input=filled, text=True, capture_output=True, check=False)
    assert parsed.returncode == 0, f"{block.where}: {parsed.stderr}"
    if "aws" in block.tags:
        aws = [c for line in block.lines() for c in re.split(r"\$\(|&&|;|\|", line) if re.match(r"\s*(aws|npx cdk|jobpipe configure)\b", c)]
        assert aws, f"{block.where} is tagged aws but runs no AWS command"
        unknown = [c.strip() for c in aws if not any(re.match(form, c.strip()) for form in AWS_FORMS)]
        assert not unknown, f"{block.where}: not a known AWS form: {unknown}"


def test_the_make_targets_the_docs_name_are_what_ci_runs_or_the_local_pipeline():
    named = {line for b in BLOCKS if b not in OFFLINE for line in b.lines() if line in CI_TARGETS | {"make serve"}}
    assert named >= {"make demo", "make test", "make serve"}, named
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert all(re.search(rf"^{target}$", ci, re.M) for target in named - {"make serve"}), named
    recipe = subprocess.run(["make", "-n", "serve"], cwd=ROOT, text=True, capture_output=True, check=True).stdout
    assert re.search(r"python -m local\.serve\s*$", recipe, re.M), recipe


@pytest.fixture(scope="module")
def session(pipeline) -> dict[str, Any]:
    """The environment of a reader's shell after the README's set-up lines, and the placeholders' values."""
    api = pipeline["api_url"]
    status, _, job = client.call("POST", f"{api}/v1/jobs", {
        "task": "documents.summarize", "mode": "batch", "input": {"documents": [{"id": "a", "text": "Held."}]}})
    assert status == 202 and job["status"] == "queued", job
    ports = {API_PORT: urlsplit(api).port, AWS_PORT: urlsplit(pipeline["aws_endpoint"]).port,
             WEBHOOK_PORT: urlsplit(pipeline["webhook_url"]).port}
    env = {**os.environ, "API": api, "KEY": "x-api-key: local-dev-key", "JOBPIPE_API_URL": api,
           "JOBPIPE_API_KEY": "local-dev-key", "AWS_ENDPOINT_URL": pipeline["aws_endpoint"],
           "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("ANTHROPIC_API_KEY", None)
    return {"env": env, "ports": ports, "job_id": job["id"], "standin_port": str(urlsplit(pipeline["standin_url"]).port)}


def as_run(text: str, session: dict[str, Any]) -> str:
    for written, listening in session["ports"].items():
        text = text.replace(f"127.0.0.1:{written}", f"127.0.0.1:{listening}")
    return text.replace("job_...", session["job_id"]).replace("<standin-port>", session["standin_port"])


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.where)
def test_a_local_block_runs_as_written_against_the_local_pipeline(block, session, standin):
    script = as_run(block.text, session)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=session["env"], text=True,
                          capture_output=True, timeout=180, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{shlex.quote(script)}\n{output[-3000:]}"
    wrong = [kind for kind in WRONG if f'"type": "{kind}"' in output]
    assert not wrong, f"{block.where} got {wrong}:\n{output[-3000:]}"
