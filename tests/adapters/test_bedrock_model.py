"""BedrockModel through the SDK's AnthropicBedrock client against the stand-in's Bedrock runtime path, and
failover between the two providers over real HTTP."""

from __future__ import annotations

import json
import urllib.request

import pytest

from jobadapters.bedrock import BedrockModel
from jobadapters.breaker_store import DynamoBreakerStore
from jobadapters.claude import AnthropicModel
from jobadapters.settings import ClaudeSettings, ConfigError
from jobadapters.wiring import build_model
from jobcore.breaker import BreakerPolicy, Breakers, BreakerState, MemoryBreakerStore
from jobcore.errors import ModelRequestError, ModelUnavailableError
from jobcore.failover import FailoverModel
from jobcore.pricing import default_prices

PROFILE = default_prices().claude.bedrock_profile("claude-sonnet-4-6", "us").id
HELLO = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 60,
    "messages": [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. It was not amused."}],
}


def bedrock_for(standin) -> BedrockModel:
    return BedrockModel(region="us-east-1", profiles={"claude-sonnet-4-6": PROFILE}, base_url=standin.base_url,
                        timeout_s=5.0, max_retries=0)


def test_a_call_goes_to_the_profiles_invoke_path_signed_with_the_bedrock_body(standin):
    answer = bedrock_for(standin).create(HELLO)

    assert answer["content"] == [{"type": "text", "text": "Summary: The quick brown fox jumps over the lazy dog."}]
    stats = standin.stats()
    assert stats["requests"] == 0  # nothing on the Anthropic path
    assert stats["bedrock"]["requests"] == 1 and stats["bedrock"]["by_status"] == {"200": 1}
    sent = stats["bedrock"]["last_request"]
    assert sent["anthropic_version"] == "bedrock-2023-05-31" and "model" not in sent and sent["max_tokens"] == 60


def test_bedrock_failures_map_onto_the_domains_errors(standin):
    standin.configure(fail_status=529, fail_times=1, provider="bedrock")
    with pytest.raises(ModelUnavailableError) as raised:
        bedrock_for(standin).create(HELLO)
    assert raised.value.status == 503 and raised.value.model_down
    standin.configure(fail_status=429, fail_times=1, provider="bedrock")
    with pytest.raises(ModelUnavailableError) as raised:
        bedrock_for(standin).create(HELLO)
    assert raised.value.kind == "rate_limited"
    with pytest.raises(ModelRequestError, match="not available"):
        bedrock_for(standin).create({**HELLO, "model": "claude-unknown"})


def test_an_unsigned_or_model_carrying_body_is_refused_as_bedrock_refuses_it(standin):
    def post(body, headers):
        request = urllib.request.Request(f"{standin.base_url}/model/{PROFILE}/invoke", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json", **headers}, method="POST")
        try:
            urllib.request.urlopen(request, timeout=5)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers.get("x-amzn-errortype")
        raise AssertionError("accepted")

    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": HELLO["messages"]}
    assert post(body, {})[0] == 403
    signed = {"authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/bedrock/aws4_request"}
    status, payload, error_type = post({**body, "model": "x"}, signed)
    assert (status, error_type) == (400, "ValidationException") and "model" in payload["message"]


def test_failover_sends_calls_to_bedrock_while_anthropic_is_overloaded_then_back(standin):
    now = [0]
    breakers = Breakers(MemoryBreakerStore(), BreakerPolicy(failures=2, cool_down_ms=1_000, refresh_ms=0), lambda: now[0])
    anthropic = AnthropicModel(api_key=lambda: "k", base_url=standin.base_url, timeout_s=5.0, max_retries=0)
    model = FailoverModel([("anthropic", anthropic), ("bedrock", bedrock_for(standin))], breakers)
    standin.configure(fail_status=529)
    assert [model.create(HELLO)["provider"] for _ in range(5)] == ["bedrock"] * 5
    assert standin.stats()["by_status"] == {"529": 2}  # the breaker opened after two: no more calls to it
    standin.configure(fail_status=None)
    standin.reset()
    now[0] += 1_000
    assert [model.create(HELLO)["provider"] for _ in range(3)] == ["anthropic"] * 3


def test_the_dynamodb_breaker_store_writes_only_on_its_version(clients):
    store = DynamoBreakerStore(clients.table)
    assert store.load("bedrock") == BreakerState()
    opened = BreakerState(failures_at=(), opened_at=5, probe_until=None, version=1)
    assert store.save("bedrock", opened, expected_version=0)
    assert not store.save("bedrock", BreakerState(version=1), expected_version=0)
    assert store.load("bedrock") == opened
    assert store.save("bedrock", BreakerState(version=2), expected_version=1)


def test_a_model_added_to_bedrocks_table_by_price_overrides_is_callable(standin):
    """PRICE_OVERRIDES may add a model's Bedrock profile (the CDK app grants it and the costing prices it): the
    wired Bedrock provider calls it through that profile, while without the override it is not available."""
    custom = "anthropic.claude-custom-5-20260101-v1:0"
    overrides = {"claude": {"bedrock": {"models": {"claude-custom-5": {"model": custom, "profiles": {"global": {
        "id": f"global.{custom}", "input_per_million": 1.0, "output_per_million": 5.0, "sources": ["us-east-1"],
        "destinations": "all commercial Regions"}}}}}}}
    settings = ClaudeSettings(model_id="claude-custom-5", providers=("bedrock",), region="us-east-1",
                              bedrock_base_url=standin.base_url)
    model = build_model(settings, max_retries=0, timeout_s=5.0, prices=default_prices().with_overrides(overrides))

    answer = model.create({**HELLO, "model": "claude-custom-5"})

    assert answer["provider"] == "bedrock" and answer["content"][0]["type"] == "text"
    assert standin.stats()["bedrock"]["requests"] == 1
    with pytest.raises(ModelRequestError, match="not available"):
        build_model(settings, max_retries=0, timeout_s=5.0, prices=default_prices()).create({**HELLO, "model": "claude-custom-5"})
    with pytest.raises(ConfigError, match="prices"):
        build_model(settings, max_retries=0, timeout_s=5.0)
