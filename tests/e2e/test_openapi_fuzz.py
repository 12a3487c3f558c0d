"""The API against its description, over HTTP: the local pipeline serves docs/openapi.json at GET
/v1/openapi.json, and Schemathesis sends every operation requests generated from that document (valid
ones and invalid ones, with the API key) and checks each answer: never a 5xx, a documented status, content
type and headers, a body that matches the documented schema (no undescribed field: the views'
schemas forbid them). Deterministic (derandomized) and bounded (MAX_EXAMPLES per operation).

The sequences must not depend on the pipeline's history or clock: Hypothesis replays a sequence and expects
the same rules to be open at each step (else ``FlakyStrategyDefinition``, 1 run in 4). A rule is open when
an earlier answer filled its bundle, so the answers that fill bundles are made to depend on the requests
alone (:class:`Sequences`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jobcore import idempotency
from jobcore.errors import InvalidInputError
from local.gateway import LOCAL_API_KEY

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"x-api-key": LOCAL_API_KEY}
MAX_EXAMPLES = 40
MAX_SEQUENCES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
# cdk.json's inline budget rather than the suite's 4 s: a loaded machine must not turn a sync job's 200 into
# a 503 (a bundle filled or not) mid-run.
PIPELINE_ARGS = ("--inline-budget", "20")
# A submit answers 200 (it ran inline) or 202 (queued): the same job, with the same links, and which of
# the two is the pipeline's timing (an inline run past its budget is queued), not the request's.
INLINE_BUNDLE, QUEUED_BUNDLE = "POST /v1/jobs -> 200", "POST /v1/jobs -> 202"


def served(pipeline: dict[str, Any]) -> dict[str, Any]:
    answer = requests.get(f"{pipeline['api_url']}/v1/openapi.json", headers=HEADERS, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_pipeline_serves_the_committed_document(pipeline):
    assert served(pipeline) == json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))


# The committed document (the test above holds that the pipeline serves the same), loaded when the module
# is collected: Schemathesis makes one test of each operation.
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, pipeline):
    case.call_and_validate(base_url=pipeline["api_url"], headers=HEADERS, checks=CHECKS, timeout=60)


def test_linked_operations_answer_as_documented(pipeline):
    """Sequences that follow the document's links: a job submitted, then read, canceled, its deliveries
    read and redelivered, so the views of real jobs in every state they reach are checked too."""

    class Sequences(schema.as_state_machine()):
        def setup(self):
            self.scenario = uuid.uuid4().hex

        def _get_target_for_result(self, result):
            target = super()._get_target_for_result(result)
            return QUEUED_BUNDLE if target == INLINE_BUNDLE else target

        def before_call(self, case):
            # A key reused across sequences would answer from an earlier sequence's job (its status code, or a
            # 422 for another body): each sequence gets keys of its own; a retry within one is still a retry.
            key = case.headers.get("Idempotency-Key")
            if valid_key(key):
                case.headers["Idempotency-Key"] = hashlib.sha256(f"{self.scenario}\n{key}".encode()).hexdigest()

        def get_call_kwargs(self, case):
            return {"base_url": pipeline["api_url"], "headers": HEADERS, "timeout": 60}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS)

    assert {INLINE_BUNDLE, QUEUED_BUNDLE} <= set(Sequences.bundles)
    Sequences.run(settings=settings(max_examples=MAX_SEQUENCES, stateful_step_count=6, derandomize=True, deadline=None,
                                    database=None, suppress_health_check=list(HealthCheck)))


def valid_key(key: object) -> bool:
    """Whether the router takes ``key`` as an Idempotency-Key (an invalid one stays as generated: a 422)."""
    try:
        return isinstance(key, str) and idempotency.check_key(key) is not None
    except InvalidInputError:
        return False
