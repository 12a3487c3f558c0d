"""No job silently lost or mis-reported (issue 20), over in-memory ports: a queued job its lane never starts,
poison dead letters, a queue that refuses a job at submit, ``max_queue_s`` across the inline fallback, and a
deleted result in a list."""

from __future__ import annotations

import pytest

from jobcore.errors import ModelUnavailableError, StoreUnavailableError
from jobcore.limits import MAX_QUEUED_S, QUEUE_RETENTION_S
from jobcore.model import JobStatus, Webhook, queued_limit_at
from jobcore.requests import SubmitRequest
from jobcore.runner import Disposition
from jobcore.sweeper import Sweeper
from jobcore.tasks import RunContext
from tests.fakes import MemoryQueue, ScriptedModel, make_service, text_response

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Say hi."}]}
LONG = {**MESSAGES, "max_tokens": 4000}  # past the inline budget: queued on the cpu lane
HOOK = Webhook("https://receiver.example/hooks")


def submit(service, payload=MESSAGES, **kwargs):
    return service.submit(SubmitRequest(task="claude.messages", input=payload, webhook=HOOK, **kwargs), tenant_id="tenant-a")


def sweeper(h, queue=None):
    return Sweeper(runner=h.runner, queue=queue or MemoryQueue(), max_attempts=3)


def run(h, job_id, model=None) -> Disposition:
    """One worker receive of the job's message."""
    return h.runner.process(job_id, ctx=RunContext(llm=model or ScriptedModel(), model_id="m"), receive_count=1,
                            max_receives=5)


# --- 1. a queued job its lane never starts ------------------------------------------------------------

def test_a_queued_job_without_max_queue_s_expires_with_the_reason_before_its_queue_could_drop_its_message():
    """GIVEN a job queued on a lane that never starts a task, with no max_queue_s
    THEN the sweeper leaves it alone until MAX_QUEUED_S after its submission, then expires it saying why (and
    its webhook is due), well before the lane queue's retention would have dropped its message."""
    service, h = make_service()
    job = submit(service, LONG).job
    sweep = sweeper(h)
    assert job.status is JobStatus.QUEUED and queued_limit_at(job) == job.created_at + MAX_QUEUED_S * 1000

    h.clock.advance(MAX_QUEUED_S - 60)
    assert not sweep.sweep() and h.store.get(job.job_id).status is JobStatus.QUEUED

    h.clock.advance(60 + sweep.grace_ms / 1000)
    report = sweep.sweep()

    expired = h.store.get(job.job_id)
    assert report.stranded == [job.job_id] and report.expired == []  # alarmed, unlike a client's deadline
    assert expired.status is JobStatus.EXPIRED and expired.finished_at < job.created_at + QUEUE_RETENTION_S * 1000
    assert expired.error == {"type": "expired", "message": (
        "not started within 84 h of its submission: the cpu lane never ran it, and its queue keeps a message at "
        "most 4 days")}
    assert expired.delivery is not None and expired.delivery.event_type == "job.expired"
    assert h.deliveries.job_ids == [job.job_id]


def test_a_job_past_its_max_queue_s_still_expires_for_that_reason():
    service, h = make_service()
    job = submit(service, LONG, max_queue_s=30).job
    h.clock.advance(40)
    report = sweeper(h).sweep()
    assert report.expired == [job.job_id] and "max_queue_s (30 s)" in h.store.get(job.job_id).error["message"]


# --- 2. poison dead letters --------------------------------------------------------------------------

class KeyCheckingStore:
    """The memory store, refusing a key DynamoDB would refuse (ValidationException) as DynamoDB does: by raising."""

    def __init__(self, store):
        self._store = store

    def get(self, job_id):
        if not isinstance(job_id, str) or not 1 <= len(job_id.encode()) <= 2048:
            raise ValueError(f"ValidationException: one or more parameter values are not valid ({job_id!r})")
        return self._store.get(job_id)

    def __getattr__(self, name):
        return getattr(self._store, name)


class Letters:
    def __init__(self, *job_ids):
        self.batches = [[(job_id, f"r-{i}", 5) for i, job_id in enumerate(job_ids)]]
        self.deleted: list[str] = []

    def receive(self):
        return self.batches.pop(0) if self.batches else []

    def delete(self, receipt):
        self.deleted.append(receipt)


def test_poison_dead_letters_are_counted_logged_and_deleted_and_the_run_settles_the_rest(caplog):
    """GIVEN a dead-letter queue holding an empty job id, a non-string one, one too long and with odd characters,
    one of no job and a message that is not a job's, beside a real job's
    THEN the drain counts and logs each poison message and deletes it, never looks an empty key up, and fails
    the real job with the reason."""
    service, h = make_service()
    job = submit(service, LONG).job
    h.runner.context.store = KeyCheckingStore(h.store)
    poison = ["", 42, "x" * 3000, "job 1; drop", "job_unknown", None]
    letters = Letters(*poison[:3], job.job_id, *poison[3:])

    report = sweeper(h).drain(letters, lane="cpu")

    assert report.poison == len(poison) and report.dead_letters == len(poison) + 1 and len(letters.deleted) == 7
    assert report.failed == [job.job_id] and h.store.get(job.job_id).status is JobStatus.FAILED
    dropped = [r.getMessage() for r in caplog.records if "poison" in r.getMessage()]
    assert len(dropped) == len(poison)
    assert "job_id '' is not a job id" in dropped[0] and "no job job_unknown" in dropped[4]
    assert "not a job message" in dropped[5]


# --- 4. a queue that refuses a job at submit ------------------------------------------------------------

def test_a_job_its_queue_refused_is_accepted_never_failed_and_the_sweeper_sends_it():
    """GIVEN the lane queue refusing the job at submit
    THEN the answer is 202 with the job, which stays queued (listed as such, no job.failed webhook), and the
    sweeper sends its message at its next run; a worker then runs it."""
    service, h = make_service(queue=MemoryQueue(broken=True))
    submitted = submit(service, LONG)
    job = submitted.job

    assert submitted.status_code == 202 and job.status is JobStatus.QUEUED and job.unsent_since == h.clock.ms()
    assert h.deliveries.job_ids == [] and job.delivery is None  # no webhook contradicts the answer
    [listed] = service.list_jobs(tenant_id="tenant-a")["jobs"]
    assert listed["id"] == job.job_id and listed["status"] == "queued"
    assert service.view(job)["waiting"].startswith("its queue refused it at ")

    still_down = MemoryQueue(broken=True)
    h.clock.advance(6)
    assert not sweeper(h, still_down).sweep()  # refused again: tried again at the next run, nothing written
    assert h.store.get(job.job_id) == job

    queue = MemoryQueue()
    h.clock.advance(60)
    report = sweeper(h, queue).sweep()

    sent = h.store.get(job.job_id)
    assert report.sent == [job.job_id] and queue.sent == [(job.job_id, "cpu")] and queue.delays == [0]
    assert sent.status is JobStatus.QUEUED and sent.unsent_since is None and "waiting" not in service.view(sent)
    assert not sweeper(h, queue).sweep() and queue.sent == [(job.job_id, "cpu")]  # sent once
    assert run(h, job.job_id, ScriptedModel([text_response("hi")])).job.status is JobStatus.SUCCEEDED


def test_a_job_whose_queue_and_store_both_failed_is_named_in_the_unavailable_answer():
    service, h = make_service(queue=MemoryQueue(broken=True))
    real_save = h.store.save

    def down(job, *, expected_version, usage=None):
        raise StoreUnavailableError("the job store is unavailable (throttled or unreachable); retry shortly")

    h.store.save = down
    with pytest.raises(StoreUnavailableError) as caught:
        submit(service, LONG)
    h.store.save = real_save

    [job] = h.store.jobs.values()
    assert caught.value.job_id == job.job_id and job.status is JobStatus.QUEUED  # recorded: the answer says so


def test_an_inline_fallback_its_queue_refused_is_accepted_too():
    service, h = make_service([ModelUnavailableError("the model did not answer in time")] * 2, queue=MemoryQueue(broken=True))
    submitted = submit(service)
    job = h.store.get(submitted.job.job_id)
    assert submitted.status_code == 202 and job.status is JobStatus.QUEUED and job.lane == "cpu"
    assert job.unsent_since is not None and h.deliveries.job_ids == []


def test_the_sweeper_sends_a_job_waiting_for_the_model_no_sooner_than_its_next_attempt():
    """A worker drops a message that arrives long before a waiting job's next attempt as a stray copy: the
    sweeper's send is delayed until then, or the job would have no message left."""
    overloaded = ModelUnavailableError("the model is overloaded (529)", status=529)
    service, h = make_service([overloaded, overloaded], queue=MemoryQueue(broken=True))
    job = h.store.get(submit(service).job.job_id)
    assert job.model_wait is not None and job.unsent_since is not None
    h.clock.advance(6)
    queue = MemoryQueue()

    sweeper(h, queue).sweep()

    [delay] = queue.delays
    assert delay == -(-(job.model_wait.next_attempt_at - h.clock.ms()) // 1000) > 0


def test_an_unsent_job_its_queue_keeps_refusing_expires_at_the_limit():
    service, h = make_service(queue=MemoryQueue(broken=True))
    job = submit(service, LONG).job
    h.clock.advance(MAX_QUEUED_S + 10)
    report = sweeper(h, MemoryQueue(broken=True)).sweep()
    assert report.stranded == [job.job_id] and h.store.get(job.job_id).status is JobStatus.EXPIRED


# --- 5. max_queue_s across the inline fallback ------------------------------------------------------------

def overloaded_for(h, seconds):
    """A model step that takes ``seconds`` of the fake clock, then answers 529."""
    def step(params):
        h.clock.advance(seconds)
        raise ModelUnavailableError("the model is overloaded (529)", status=529)
    return step


def test_an_auto_job_that_falls_back_to_the_queue_keeps_its_max_queue_s():
    """GIVEN max_queue_s 10 and a model overloaded inline
    THEN the queued job keeps its deadline: the worker that receives it 40 s later expires it without a model call."""
    service, h = make_service()
    service.llm = ScriptedModel([overloaded_for(h, 2), overloaded_for(h, 2)])
    submitted = submit(service, max_queue_s=10)
    job = h.store.get(submitted.job.job_id)
    assert submitted.status_code == 202 and job.status is JobStatus.QUEUED and job.lane == "cpu"
    assert job.queue_deadline_at == job.created_at + 10_000

    h.clock.advance(40)
    model = ScriptedModel()
    outcome = run(h, job.job_id, model)

    assert outcome.delete and outcome.job.status is JobStatus.EXPIRED and model.calls == []
    assert "max_queue_s (10 s)" in outcome.job.error["message"]


def test_the_sweeper_expires_a_fallen_back_job_at_its_deadline():
    service, h = make_service()
    service.llm = ScriptedModel([overloaded_for(h, 2), overloaded_for(h, 2)])
    job = submit(service, max_queue_s=10).job
    h.clock.advance(20)
    assert sweeper(h).sweep().expired == [job.job_id]


def test_an_inline_attempt_that_outlasts_max_queue_s_expires_instead_of_being_queued():
    service, h = make_service()
    service.llm = ScriptedModel([overloaded_for(h, 8), overloaded_for(h, 8)])
    submitted = submit(service, max_queue_s=10)
    job = h.store.get(submitted.job.job_id)
    assert submitted.status_code == 200 and job.status is JobStatus.EXPIRED and service.queue.sent == []
    assert job.error["type"] == "expired" and "max_queue_s (10 s)" in job.error["message"]
    assert "overloaded" in job.error["message"]


def test_an_inline_job_that_finishes_ignores_its_max_queue_s():
    service, h = make_service([text_response("hi")])
    submitted = submit(service, max_queue_s=1)
    assert submitted.job.status is JobStatus.SUCCEEDED and "queue_deadline_at" not in service.view(submitted.job)


# --- 6. a deleted result in a list -------------------------------------------------------------------------

@pytest.mark.parametrize("size", [20_000, 300_000])  # kept in S3: read by GET, or too big to read
def test_a_list_entry_of_a_job_whose_result_was_deleted_reads_as_its_own_view_does(size):
    service, h = make_service([text_response("x" * size), text_response("y" * size)])
    gone, kept = (submit(service).job for _ in range(2))
    assert gone.result_ref is not None and kept.result_ref is not None
    del h.blobs.docs[gone.result_ref]  # deleted by hand, before result_expires_at

    listed = {entry["id"]: entry for entry in service.list_jobs(tenant_id="tenant-a")["jobs"]}

    own = service.view(h.store.get(gone.job_id))
    assert own["result"] is None and own["result_status"] == "expired" and "result_url" not in own
    assert listed[gone.job_id] == {k: v for k, v in own.items() if k != "result"} | {"result": None}
    assert listed[kept.job_id]["result_url"] == f"memory://{kept.result_ref}"
    assert "result" not in listed[kept.job_id] and "result_status" not in listed[kept.job_id]
