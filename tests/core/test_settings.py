"""Settings read once from the environment, with errors that name the variable."""

import pytest

from jobadapters.settings import ConfigError, RouterSettings, WorkerSettings

ROUTER = {"JOBS_TABLE": "t", "RESULTS_BUCKET": "b", "CPU_QUEUE_URL": "q"}
WORKER = {"JOBS_TABLE": "t", "RESULTS_BUCKET": "b", "QUEUE_URL": "q"}


def test_router_defaults():
    settings = RouterSettings.from_env(ROUTER)
    assert settings.inline_budget_s == 20.0 and settings.gpu_queue_url is None and settings.claude.base_url is None


@pytest.mark.parametrize("missing", sorted(ROUTER))
def test_router_requires_its_resources(missing):
    env = {k: v for k, v in ROUTER.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        RouterSettings.from_env(env)


@pytest.mark.parametrize("budget", ["0", "26", "29"])
def test_inline_budget_must_stay_under_the_gateway_timeout(budget):
    with pytest.raises(ConfigError, match="INLINE_BUDGET_S"):
        RouterSettings.from_env({**ROUTER, "INLINE_BUDGET_S": budget})


def test_numbers_are_checked():
    with pytest.raises(ConfigError, match="ROUTER_MEMORY_MB='lots'"):
        RouterSettings.from_env({**ROUTER, "ROUTER_MEMORY_MB": "lots"})


def test_worker_settings_and_lane():
    settings = WorkerSettings.from_env({**WORKER, "LANE": "gpu", "WORKER_CONCURRENCY": "3", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"})
    assert (settings.lane, settings.concurrency, settings.claude.base_url) == ("gpu", 3, "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="LANE"):
        WorkerSettings.from_env({**WORKER, "LANE": "tpu"})


class RecordingEnv(dict):
    """An environment that remembers every key asked for."""

    def __init__(self, values):
        super().__init__(values)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


@pytest.mark.parametrize(("settings", "env"), [(RouterSettings, ROUTER), (WorkerSettings, WORKER)])
def test_every_variable_read_is_declared(settings, env):
    # The CDK constructs set exactly ENV (and SECRETS); a variable read but not declared would
    # silently keep its default in AWS.
    recording = RecordingEnv(env)
    settings.from_env(recording)
    declared = settings.ENV | settings.LOCAL_ENV | getattr(settings, "SECRETS", frozenset())
    assert recording.read - declared == set()
    assert set(env) <= recording.read
