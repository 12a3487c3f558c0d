"""Submitting and reading jobs through the service, over in-memory ports."""

from dataclasses import replace

import pytest

from jobcore.errors import JobNotFoundError, ModelRequestError, ModelUnavailableError, UnroutableError
from jobcore.model import JobStatus, Mode
from jobcore.requests import SubmitRequest
from jobcore.routing import Decision, Hints, RoutingPolicy
from jobcore.service import INLINE_INPUT_LIMIT, INTAKE_ASYNC
from jobcore.tasks.invoice import InvoiceTask
from jobcore.views import render
from tests import fakes
from tests.fakes import LANES, MemoryQueue, make_lanes, text_response

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Say hi."}]}


POLICY = RoutingPolicy(lanes=LANES)


def make_service(script=(), *, queue=None, policy=POLICY, cost_model=None):
    return fakes.make_service(script, queue=queue, policy=policy, cost_model=cost_model)


def submit(service, task="claude.messages", payload=MESSAGES, **kwargs):
    return service.submit(SubmitRequest(task=task, input=payload, **kwargs), tenant_id="tenant-a")


def test_short_job_runs_inline_and_returns_the_result():
    service, h = make_service([text_response("hi!")])
    submission = submit(service)
    job = submission.job
    assert job.status is JobStatus.SUCCEEDED and job.lane == "inline"
    assert submission.output["content"][0]["text"] == "hi!"
    assert render(job, h.blobs)["result"] == submission.output and h.blobs.docs == {}  # kept in the job item
    assert h.store.get(job.job_id) == job and service.queue.sent == []
    assert job.usage.model_calls == 1 and job.attempts == 1


def test_long_job_is_queued_on_the_cpu_lane():
    service, h = make_service()
    job = submit(service, payload={**MESSAGES, "max_tokens": 4000}).job
    assert job.status is JobStatus.QUEUED and job.lane == "cpu"
    assert service.queue.sent == [(job.job_id, "cpu")]
    assert h.store.get(job.job_id).status is JobStatus.QUEUED
    assert "inline budget" in job.route_reason


@pytest.mark.parametrize("error", [
    ModelUnavailableError("model answered 529: overloaded"), ModelUnavailableError("the model did not answer in time"),
])
def test_inline_falls_back_to_the_queue_when_the_model_is_slow_or_overloaded(error):
    service, h = make_service([error, error])
    job = submit(service).job
    assert job.status is JobStatus.QUEUED and job.lane == "cpu"
    assert job.route_reason.startswith("cpu: inline fallback") and str(error) in job.route_reason
    assert service.queue.sent == [(job.job_id, "cpu")]
    assert h.store.get(job.job_id) == job  # recorded before it was handed to the queue


def test_inline_permanent_model_error_fails_the_job_without_queueing():
    service, h = make_service([ModelRequestError("model answered 404: no such model")])
    job = submit(service).job
    assert job.status is JobStatus.FAILED and job.error["type"] == "model_rejected"
    assert service.queue.sent == []


def test_a_queue_that_refuses_the_job_leaves_it_accepted_queued_and_marked_for_the_sweeper():
    service, h = make_service(queue=MemoryQueue(broken=True))
    submitted = submit(service, mode=Mode.ASYNC)
    (job,) = h.store.jobs.values()
    assert submitted.status_code == 202 and submitted.job == job
    assert job.status is JobStatus.QUEUED and job.unsent_since == h.clock.ms() and job.error is None


def test_unroutable_requests_store_nothing():
    service, h = make_service()
    with pytest.raises(UnroutableError):
        submit(service, payload={**MESSAGES, "max_tokens": 4000}, mode=Mode.SYNC)
    with pytest.raises(UnroutableError):
        submit(service, hints=Hints(memory_mb=1_000_000))
    assert h.store.jobs == {}


def test_large_input_goes_to_the_blob_store():
    service, h = make_service()
    big = {"documents": [{"text": "x" * (INLINE_INPUT_LIMIT + 1)}]}
    job = submit(service, task="documents.summarize", payload=big).job
    assert job.input is None and job.input_ref == f"inputs/{job.job_id}.json"
    assert h.runner.load_input(job)["documents"][0]["text"] == big["documents"][0]["text"]


def test_get_hides_other_tenants_jobs():
    service, _ = make_service([text_response("hi")])
    job = submit(service).job
    assert service.get(job.job_id, tenant_id="tenant-a") == job
    with pytest.raises(JobNotFoundError):
        service.get(job.job_id, tenant_id="tenant-b")
    with pytest.raises(JobNotFoundError):
        service.get("job_missing", tenant_id="tenant-a")


def test_job_ttl_is_set_from_the_creation_time():
    service, h = make_service([text_response("hi")])
    job = submit(service).job
    assert job.expires_at == h.clock.now_ms // 1000 + 30 * 86_400


def test_render_includes_a_small_result_kept_in_the_job_without_a_link():
    service, h = make_service([text_response("hi")])
    job = submit(service).job
    view = render(job, h.blobs)
    assert view["result"]["content"][0]["text"] == "hi"
    assert "result_url" not in view  # no S3 object: tests/core/test_result_in_item.py has the large result's link
    assert view["route"] == {"lane": "inline", "reason": job.route_reason}
    assert view["status"] == "succeeded" and view["created_at"].endswith("Z")


def priced_service(script=(), *, rates=None):
    from jobcore.costing import CostModel
    from jobcore.pricing import default_prices

    service, h = make_service(script, cost_model=CostModel(default_prices(), LANES))
    h.runner.cost_model = service.cost_model
    service.arrival_rates_per_min = rates
    return service, h


def test_jobs_carry_an_estimate_when_routed_and_the_actual_cost_when_done():
    service, h = priced_service([text_response("hi", input_tokens=1_000_000, output_tokens=0)])
    h.clock.advance(0)
    job = submit(service).job
    estimate, actual = job.cost["estimate"], job.cost["actual"]
    assert estimate["breakdown"]["claude"] > 0 and "inline" in estimate["basis"]
    # 1M input tokens of claude-default (unknown model: priced as the default, $3/M): $3 of Claude.
    assert actual["breakdown"]["claude"] == pytest.approx(3.0)
    assert actual["total"] == pytest.approx(sum(actual["breakdown"].values()))


def test_a_task_declared_frequent_goes_to_the_worker_when_that_is_cheaper():
    rare, _ = priced_service([text_response("hi")], rates={"claude.messages": 0.01})
    assert submit(rare).job.lane == "inline"
    frequent, _ = priced_service([text_response("sync answer")], rates={"claude.messages": 1000})
    job = submit(frequent).job
    assert job.lane == "cpu" and "where the always-on worker is cheaper" in job.route_reason
    assert submit(frequent, mode=Mode.SYNC).job.lane == "inline"  # a client waiting still gets inline


def test_fallback_replaces_the_inline_estimate_with_the_queued_one():
    service, _ = priced_service([ModelUnavailableError("529"), ModelUnavailableError("529")])
    job = submit(service).job
    assert job.lane == "cpu" and job.cost["estimate"]["basis"].startswith("cpu:")


def test_the_inline_lane_sets_the_deadline_of_an_inline_run():
    lanes = make_lanes(inline_budget_s=5)
    service, h = make_service([ModelUnavailableError("529", retry_after_s=4.5)], policy=RoutingPolicy(lanes=lanes))
    job = submit(service).job
    # 4.5 s of the 5 s budget would leave too little for a second attempt: the job falls back at once.
    assert job.lane == "cpu" and h.clock.sleeps == [] and len(service.llm.calls) == 1
    assert service.llm.calls[0][1] == pytest.approx(5.0)


def test_describe_says_where_a_task_runs_why_and_what_it_costs():
    service, _ = priced_service()
    described = {task["name"]: task for task in service.tasks()}
    assert {"claude.messages", "invoice.extract", "documents.summarize"} <= set(described)
    summarize = described["documents.summarize"]
    assert summarize["route"] == {"lane": "cpu", "reason": "cpu: expected 60.0 s > inline budget 20 s"}
    assert summarize["typical_cost"]["basis"].startswith("cpu:") and summarize["profile"]["trigger"] == "background"
    assert described["invoice.extract"]["route"]["lane"] == "inline"


def test_describe_reports_an_unroutable_task_with_the_reason():
    service, _ = make_service(policy=RoutingPolicy(lanes=make_lanes(gpu_enabled=False)))

    class GpuInvoice(InvoiceTask):
        profile = replace(InvoiceTask.profile, gpu=True)

    described = service.catalogue_view.describe(GpuInvoice())
    assert described["route"] == {"lane": None, "reason": "needs a GPU, and the gpu lane is not enabled in this deployment"}
    assert described["input_schema"] == InvoiceTask.input_schema  # what to send, even where it cannot run


def test_describe_gives_each_task_its_input_schema_a_valid_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    service, _ = priced_service()
    for described in service.tasks():
        schema = described["input_schema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        task = service.runner.catalogue[described["name"]]
        assert schema == task.input_schema


def test_describe_shows_the_batch_price_beside_the_routed_one():
    service, _ = priced_service()
    described = {task["name"]: task for task in service.tasks()}
    invoice = described["invoice.extract"]
    # 1,500 in / 400 out on claude-sonnet-4-5 at half price: (1,500 x 3 + 400 x 15) / 2M; no compute
    assert invoice["batch_cost"]["breakdown"]["claude"] == pytest.approx(0.0105 / 2)
    assert invoice["batch_cost"]["breakdown"]["compute"] == 0
    assert invoice["batch_cost"]["breakdown"]["claude"] == pytest.approx(invoice["typical_cost"]["breakdown"]["claude"] / 2)
    assert invoice["batch_cost"]["total"] < invoice["typical_cost"]["total"]
    assert "batch: 50 % off" in invoice["batch_cost"]["basis"]
    summarize = described["documents.summarize"]
    assert summarize["batch_cost"]["total"] < summarize["typical_cost"]["total"]


def test_describe_has_no_batch_price_for_a_task_the_batch_lane_cannot_take():
    service, _ = priced_service()

    class GpuInvoice(InvoiceTask):
        profile = replace(InvoiceTask.profile, gpu=True)

    assert service.catalogue_view.describe(GpuInvoice()).get("batch_cost") is None
    unpriced, _ = make_service()
    assert unpriced.catalogue_view.describe(InvoiceTask())["batch_cost"] is None


class CountingCatalogue(dict):
    """The catalogue, counting the look-ups of each task by name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.looked_up: list[str] = []

    def __getitem__(self, name):
        self.looked_up.append(name)
        return super().__getitem__(name)


@pytest.mark.parametrize("script", [
    [text_response("hi!")],  # runs inline
    [ModelUnavailableError("529"), ModelUnavailableError("529")],  # runs inline, then falls back to the queue
])
def test_a_submit_looks_its_task_up_once(script):
    service, h = make_service(script)
    h.runner.context.catalogue = catalogue = CountingCatalogue(service.context.catalogue)
    submit(service)
    assert catalogue.looked_up == ["claude.messages"]


def test_the_service_and_its_runner_share_one_context():
    service, h = make_service()
    assert service.context is h.runner.context
    with pytest.raises(ValueError, match="one JobContext"):
        replace(service, runner=fakes.harness().runner)


def test_a_route_reason_is_fields_rendered_as_text():
    assert Decision("cpu", "client asked for async").reason == "cpu: client asked for async"
    fallback = Decision("cpu", "inline fallback, the model was overloaded (529)", earlier="inline: expected 1.0 s <= budget 20 s")
    assert fallback.reason == "cpu: inline fallback, the model was overloaded (529) (inline: expected 1.0 s <= budget 20 s)"
    noted = replace(Decision("gpu", "task needs a GPU (ECS on EC2)"), note="no client")
    assert noted.reason == "gpu: task needs a GPU (ECS on EC2) (no client)"


def test_an_intake_job_is_async_because_nobody_waits_and_its_reason_says_so():
    """GIVEN jobs submitted by the S3 intake (mode async, a source)
    THEN the reason of the async rule is the intake's, and a rule that decided otherwise (a GPU) gets it as a note."""
    service, _ = fakes.make_service(policy=RoutingPolicy(lanes=make_lanes(gpu_enabled=True)))
    source = "s3://bucket/intake/claude.messages/a.json"
    job = service.submit(SubmitRequest(task="claude.messages", input=MESSAGES, mode=Mode.ASYNC), tenant_id="t", source=source).job
    assert (job.lane, job.route_reason, job.source) == ("cpu", f"cpu: {INTAKE_ASYNC}", source)
    gpu = service.submit(SubmitRequest(task="embeddings.encode", input={"texts": ["a"]}, mode=Mode.ASYNC), tenant_id="t",
                         source="s3://bucket/intake/embeddings.encode/b.json").job
    assert (gpu.lane, gpu.route_reason) == ("gpu", f"gpu: task needs a GPU (ECS on EC2) ({INTAKE_ASYNC})")
    plain = service.submit(SubmitRequest(task="claude.messages", input=MESSAGES, mode=Mode.ASYNC), tenant_id="t").job
    assert plain.route_reason == "cpu: client asked for async" and plain.source is None
