"""Inline Claude calls: bounded retries that never run past the deadline."""

import pytest

from jobcore.deadline import DeadlineModel
from jobcore.errors import ModelRequestError, ModelUnavailableError
from tests.fakes import FakeClock, ScriptedModel, text_response


def deadline_model(script, *, budget_s=20.0, max_attempts=2):
    clock = FakeClock()
    model = ScriptedModel(script)
    wrapped = DeadlineModel(
        model, deadline=clock.monotonic() + budget_s, clock=clock.monotonic, sleep=clock.sleep, max_attempts=max_attempts)
    return wrapped, model, clock


def test_each_attempt_gets_only_the_time_left():
    wrapped, model, clock = deadline_model([text_response("ok")])
    clock.advance(5)
    wrapped.create({"model": "m"})
    assert model.calls[0][1] == pytest.approx(15.0)


def test_a_429_is_retried_after_retry_after_when_it_fits():
    wrapped, model, clock = deadline_model([ModelUnavailableError("429", retry_after_s=2), text_response("ok")])
    assert wrapped.create({})["content"][0]["text"] == "ok"
    assert clock.sleeps == [2] and model.calls[1][1] == pytest.approx(18.0)


def test_gives_up_after_max_attempts():
    wrapped, model, _ = deadline_model([ModelUnavailableError("529"), ModelUnavailableError("529"), text_response("late")])
    with pytest.raises(ModelUnavailableError, match="529"):
        wrapped.create({})
    assert len(model.calls) == 2


def test_does_not_sleep_past_the_deadline():
    wrapped, model, clock = deadline_model([ModelUnavailableError("429", retry_after_s=30), text_response("never")], max_attempts=5)
    with pytest.raises(ModelUnavailableError):
        wrapped.create({})
    assert clock.sleeps == [] and len(model.calls) == 1


def test_a_spent_budget_fails_before_calling():
    wrapped, model, clock = deadline_model([text_response("never")])
    clock.advance(19.5)
    with pytest.raises(ModelUnavailableError, match="inline budget spent"):
        wrapped.create({})
    assert model.calls == []


def test_permanent_errors_are_not_retried():
    wrapped, model, _ = deadline_model([ModelRequestError("400 bad model"), text_response("never")], max_attempts=5)
    with pytest.raises(ModelRequestError):
        wrapped.create({})
    assert len(model.calls) == 1
