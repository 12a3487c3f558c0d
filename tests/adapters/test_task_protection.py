"""TaskProtection against a local stand-in for the ECS agent's task protection endpoint."""

from __future__ import annotations

import urllib.request

import pytest

from tests.adapters.support import RecordingServer
from worker.protection import MAX_EXPIRES_IN_MINUTES, TaskProtection


@pytest.fixture
def agent():
    server = RecordingServer().start()
    yield server
    server.stop()


def test_protection_on_then_off_puts_the_agents_state_endpoint(agent):
    protection = TaskProtection(agent.url, expires_in_minutes=30)

    assert protection.set(True) is True
    assert protection.set(False) is True

    assert [(r.method, r.path) for r in agent.requests] == [("PUT", "/task-protection/v1/state")] * 2
    assert [r.json() for r in agent.requests] == [
        {"ProtectionEnabled": True, "ExpiresInMinutes": 30},
        {"ProtectionEnabled": False},
    ]
    assert agent.requests[0].headers["content-type"] == "application/json"


def test_without_an_agent_uri_it_is_a_no_op(monkeypatch):
    def no_http(*args, **kwargs):
        raise AssertionError("TaskProtection(None) must not make a request")

    monkeypatch.setattr(urllib.request, "urlopen", no_http)

    assert TaskProtection(None).set(True) is False
    assert TaskProtection(None).set(False) is False


def test_an_agent_that_refuses_is_reported_not_raised(agent):
    agent.status = 500

    assert TaskProtection(agent.url).set(True) is False
    assert len(agent.requests) == 1


def test_an_unreachable_agent_is_reported_not_raised():
    assert TaskProtection("http://127.0.0.1:9", timeout_s=0.5).set(True) is False


def test_a_busy_worker_renews_protection_at_half_its_lifetime():
    assert TaskProtection(None, expires_in_minutes=60).renew_after_s == 30 * 60
    assert TaskProtection(None, expires_in_minutes=1).renew_after_s == 30


@pytest.mark.parametrize("minutes", [0, MAX_EXPIRES_IN_MINUTES + 1])
def test_a_lifetime_the_agent_would_refuse_is_refused_at_start(minutes):
    with pytest.raises(ValueError, match="expires_in_minutes"):
        TaskProtection(None, expires_in_minutes=minutes)
