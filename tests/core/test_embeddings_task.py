"""``embeddings.encode``'s spec: its input checks, its batch plan and where the router sends it."""

from __future__ import annotations

import itertools
import random

import pytest

from jobcore.errors import InvalidInputError, UnroutableError
from jobcore.model import Mode
from jobcore.routing import RoutingPolicy, decide
from jobcore.tasks import CATALOGUE
from jobcore.tasks.embeddings import MAX_TEXT_CHARS, MAX_TEXTS, TOKENS_PER_BATCH, plan_batches
from tests.fakes import make_lanes

SPEC = CATALOGUE["embeddings.encode"]


def test_defaults_are_filled_in():
    assert SPEC.validate({"texts": ["a", "b"]}) == {"texts": ["a", "b"], "normalize": True, "batch_size": 64, "format": "npy"}
    assert SPEC.validate({"texts": ["a"], "max_length": 128, "format": "jsonl", "normalize": False, "batch_size": 1})[
        "max_length"] == 128


@pytest.mark.parametrize(("payload", "field"), [
    ([], "input"),
    ({}, "input.texts"),
    ({"texts": []}, "input.texts"),
    ({"texts": "one text"}, "input.texts"),
    ({"texts": ["ok", None]}, "input.texts[1]"),
    ({"texts": ["ok", ["nested"]]}, "input.texts[1]"),
    ({"texts": ["ok", "   "]}, "input.texts[1]"),
    ({"texts": ["x" * (MAX_TEXT_CHARS + 1)]}, "input.texts[0]"),
    ({"texts": ["a"] * (MAX_TEXTS + 1)}, "input.texts"),
    ({"texts": ["a"], "normalize": "yes"}, "input.normalize"),
    ({"texts": ["a"], "max_length": 1}, "input.max_length"),
    ({"texts": ["a"], "max_length": 10**9}, "input.max_length"),
    ({"texts": ["a"], "max_length": 12.5}, "input.max_length"),
    ({"texts": ["a"], "batch_size": 0}, "input.batch_size"),
    ({"texts": ["a"], "batch_size": True}, "input.batch_size"),
    ({"texts": ["a"], "format": "csv"}, "input.format"),
    ({"texts": ["a"], "model": "other"}, "input.model"),
])
def test_bad_input_names_the_field(payload, field):
    with pytest.raises(InvalidInputError) as raised:
        SPEC.validate(payload)
    assert raised.value.field == field


def test_the_estimate_grows_with_the_texts_and_fits_the_tasks_limit():
    small = SPEC.expected_duration_s(SPEC.validate({"texts": ["a"]}))
    large = SPEC.expected_duration_s(SPEC.validate({"texts": ["a"] * MAX_TEXTS}))
    assert 0 < small < large <= SPEC.profile.timeout_s


def test_it_goes_to_the_gpu_lane_and_nowhere_else():
    policy = RoutingPolicy(lanes=make_lanes(gpu_enabled=True))
    decision = decide(SPEC.profile, expected_duration_s=10, policy=policy)
    assert decision.lane == "gpu"
    with pytest.raises(UnroutableError, match="gpu lane is not enabled"):
        decide(SPEC.profile, expected_duration_s=10, policy=RoutingPolicy(lanes=make_lanes(gpu_enabled=False)))
    with pytest.raises(UnroutableError, match="sync is impossible"):
        decide(SPEC.profile, expected_duration_s=10, policy=policy, mode=Mode.SYNC)


@pytest.mark.parametrize("seed", range(20))
def test_the_batch_plan_covers_every_text_once_within_its_limits(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([1, 3, 8, 30, 200, 600, 5_000]) for _ in range(rng.randint(1, 300))]
    max_texts = rng.randint(1, 64)
    max_tokens = rng.choice([64, 1_000, TOKENS_PER_BATCH])
    batches = plan_batches(lengths, max_texts=max_texts, max_tokens=max_tokens)
    assert sorted(itertools.chain.from_iterable(batches)) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= max_texts
        padded = max(lengths[i] for i in batch) * len(batch)
        assert padded <= max_tokens or len(batch) == 1  # an over-long text runs alone
    # shortest first: each batch's longest is no longer than the next batch's shortest
    for first, second in itertools.pairwise(batches):
        assert max(lengths[i] for i in first) <= min(lengths[i] for i in second)


def test_the_batch_plan_refuses_nonsense_limits():
    with pytest.raises(ValueError):
        plan_batches([1, 2], max_texts=0)
