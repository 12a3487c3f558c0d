"""The API against its description, over HTTP: the local pipeline serves docs/openapi.json at GET
/v1/openapi.json, and Schemathesis sends every operation requests generated from that document (valid
ones and invalid ones, with the API key) and checks each answer: never a 5xx, a documented status, content
type and headers, a body that matches the documented schema (no undescribed field: the views'
schemas forbid them). Deterministic (derandomized) and bounded (MAX_EXAMPLES per operation).
"""

from __future__ import annotations

import json
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

from local.gateway import LOCAL_API_KEY

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"x-api-key": LOCAL_API_KEY}
MAX_EXAMPLES = 60
MAX_SEQUENCES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]


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
        def get_call_kwargs(self, case):
            return {"base_url": pipeline["api_url"], "headers": HEADERS, "timeout": 60}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS)

    Sequences.run(settings=settings(max_examples=MAX_SEQUENCES, stateful_step_count=6, derandomize=True, deadline=None,
                                    database=None, suppress_health_check=list(HealthCheck)))
