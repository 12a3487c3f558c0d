"""A model past its end of life is refused where it is configured, and the price file's retirement dates are
the ones the anthropic SDK warns with (so an SDK upgrade that retires a model we default to fails here)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from importlib import resources

import pytest
from anthropic._data import DEPRECATED_MODELS  # the SDK's own table (a private module: pinned by requirements.txt)

from jobcore.pricing import Prices, default_prices
from stacks.config import ConfigError, PipelineConfig

PRICES = default_prices()


def sdk_end_of_life(model_id: str) -> date | None:
    """The SDK's date ("November 30th, 2026") of the model's end of life, or None."""
    text = DEPRECATED_MODELS.get(model_id)
    return datetime.strptime(re.sub(r"(\d)(st|nd|rd|th),", r"\1,", text), "%B %d, %Y").date() if text else None


@pytest.mark.parametrize("model_id", sorted(PRICES.claude.models))
def test_the_price_file_retires_a_model_on_the_day_the_sdk_says(model_id):
    assert PRICES.claude.end_of_life.get(model_id) == sdk_end_of_life(model_id)


def test_the_default_model_is_not_being_retired():
    assert PRICES.claude.default_model not in DEPRECATED_MODELS
    assert PRICES.claude.retired(PRICES.claude.default_model, date(2100, 1, 1)) is None


def test_a_model_is_refused_from_its_end_of_life_day_on_not_before():
    day = PRICES.claude.end_of_life["claude-sonnet-4-5"]
    assert PRICES.claude.retired("claude-sonnet-4-5", date.fromordinal(day.toordinal() - 1)) is None
    reason = PRICES.claude.retired("claude-sonnet-4-5", day)
    assert reason is not None and day.isoformat() in reason and PRICES.claude.default_model in reason
    assert PRICES.claude.retired("a-model-nobody-retired", date(2100, 1, 1)) is None


@pytest.mark.parametrize("key", ["model_id", "worker_model_id"])
def test_synth_refuses_a_retired_model_naming_the_key_and_the_day(key):
    with pytest.raises(ConfigError) as raised:
        PipelineConfig.from_mapping({key: "claude-sonnet-4-5"})  # retired on 2026-11-30: in the past from now on
    message = str(raised.value)
    assert f"'{key}'" in message and "2026-11-30" in message


def test_the_default_configuration_names_the_price_files_default_model():
    config = PipelineConfig.from_mapping({})
    assert config.model_id == config.worker_model_id == PRICES.claude.default_model


def test_an_override_may_retire_a_model_and_a_bad_date_is_refused():
    def model(end_of_life: str) -> dict:
        return {"claude": {"models": {"claude-old": {"input_per_million": 1, "output_per_million": 5, "end_of_life": end_of_life}}}}

    assert PRICES.with_overrides(model("2026-01-01")).claude.retired("claude-old", date(2026, 1, 1))
    with pytest.raises(ValueError, match=r"claude\.models\.claude-old\.end_of_life"):
        PRICES.with_overrides(model("soon"))
    with pytest.raises(ValueError, match="default must be a current model"):
        Prices.from_dict({**_raw(), "claude": {**_raw()["claude"], "default_model": "claude-sonnet-4-5"}})


def _raw() -> dict:
    return json.loads(resources.files("jobcore").joinpath("prices.json").read_text())
