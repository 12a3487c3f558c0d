"""The capacity model's per-job figures (tools.scale) against the write units the real code makes on moto.

One queued job with a webhook goes through the real adapters (the router's submit, a worker's claim and finish,
a heartbeat's lease renewal, the dispatcher's delivery) while ``local.write_units`` counts the units each phase
writes to the table and to each index, from the items moto actually holds. The model must make the same writes
(the same steps, the same indexes touched) and bill the same units for them.
"""

from __future__ import annotations

import pytest

from local.write_units import TABLE
from tools import scale

RESULT_BYTES = 300  # about the stand-in model's answer as the runner stores it


@pytest.fixture(scope="module")
def counted():
    from bench.bench_calls import MESSAGES, TENANT, _moto, _service
    from jobadapters.dynamo import DynamoJobStore
    from jobadapters.s3 import S3BlobStore
    from jobcore.deliveries import AttemptResult
    from jobcore.dispatch import Dispatcher
    from jobcore.requests import parse_submit
    from jobcore.tasks import RunContext
    from local.write_units import WriteUnits

    class Receiver:
        def post(self, url, *, event_id, body, timeout_s):
            return AttemptResult(status=204, duration_ms=5)

    class NoQueue:
        def schedule(self, job_id, *, due_at, delay_s=0):
            pass

    phases = {}
    with _moto() as (aws, clients):
        service, worker, model = _service(aws, clients)
        store = DynamoJobStore(clients.table)
        units = WriteUnits(clients.table)
        job = service.submit(parse_submit({"task": "claude.messages", "input": MESSAGES, "mode": "async",
                                           "webhook": {"url": "https://hooks.example.com/jobs"}}), tenant_id=TENANT).job
        phases["submit"] = (units.take(), store.get(job.job_id))
        worker.process(job.job_id, ctx=RunContext(llm=model, model_id="claude-bench"), receive_count=1, max_receives=5)
        phases["run"] = (units.take(), store.get(job.job_id))
        dispatcher = Dispatcher(store=store, blobs=S3BlobStore(clients.s3, aws.bucket), sender=Receiver(), queue=NoQueue(),
                                render=lambda job: {"id": job.job_id}, clock_ms=worker.clock_ms)
        dispatcher.deliver(job.job_id)
        phases["deliver"] = (units.take(), store.get(job.job_id))
        # A heartbeat's renewals of a running job (the run above answered at once: no beat fell within it), one
        # with the bench's input and one with an input near the largest kept in the job item.
        for phase, payload in (("renew", MESSAGES), ("renew big", BIG_MESSAGES)):
            running = service.submit(parse_submit({"task": "claude.messages", "input": payload, "mode": "async"}),
                                     tenant_id=TENANT).job
            claimed, _ = store.claim(running.job_id, owner="worker-1", now_ms=running.created_at,
                                     lease_expires_at=running.created_at + 60_000)
            units.take()
            assert store.renew_lease(running.job_id, owner="worker-1", until_ms=running.created_at + 80_000)
            phases[phase] = (units.take(), store.get(running.job_id))
    return phases


BIG_MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "x" * 60_000}]}


def _model_steps(renewals=0, *, messages=None, layout="after"):
    """The model's steps for a job the size of the counted one (its input and result as bench.bench_calls makes them)."""
    import json

    from bench.bench_calls import MESSAGES

    lay = scale.layout(layout)
    return dict(scale.per_job(lay, inline=False, renewals=renewals, webhook=True,
                              input_bytes=len(json.dumps(messages or MESSAGES)), result_bytes=RESULT_BYTES,
                              actual_cost=False).steps)  # the bench's worker prices nothing


def _summed(steps, names):
    total: dict[str, int] = {}
    for name in names:
        for where, count in steps[name].items():
            total[where] = total.get(where, 0) + count
    return total


def test_a_submission_writes_the_table_the_tenant_index_and_the_watch_index_once_each(counted):
    """A queued job is watched from its submission (its queue deadline, or the longest it may stay queued)."""
    assert counted["submit"][0] == _model_steps()["create"]
    assert set(counted["submit"][0]) == {TABLE, "by_tenant_list", "by_watch"}


def test_the_run_claims_and_finishes_as_the_model_bills_it(counted):
    """Claim: the table, the tenant index (its status), the watch entry moved to the lease's end; finish: the table
    (the result in the item), the tenant index, the watch entry out and the delivery entry in."""
    counted_units, _ = counted["run"]
    modelled = _summed(_model_steps(), ["claim", "finish"])
    assert set(counted_units) == set(modelled) == {TABLE, "by_tenant_list", "by_watch", "by_delivery_due"}
    assert counted_units["by_tenant_list"] == modelled["by_tenant_list"]  # 1 + 2: the finished entry is over 1 KB
    # Every index write as modelled. The table's units may differ by one a write: the model's item is the real
    # transitions' item with its own clock, prices and tenant, tens of bytes off the counted one, and the claimed
    # item sits near a 1 KB boundary (a field more or a longer estimate moves it across).
    assert {k: v for k, v in counted_units.items() if k != TABLE} == {k: v for k, v in modelled.items() if k != TABLE}
    assert abs(counted_units[TABLE] - modelled[TABLE]) <= 2, (counted_units, modelled)


def test_a_lease_renewal_writes_its_lease_item_alone_one_unit_and_its_watch_entry_whatever_the_job_s_size(counted):
    """The lease is in its own item (written with the claim): a renewal writes it (1 unit) and moves its keys-only
    watch entry (2), never the job item (whose version stays) nor the tenant index; with the lease in the job item,
    the renewal of a job with a 60 KB input was billed on the whole item."""
    for phase, messages in (("renew", None), ("renew big", BIG_MESSAGES)):
        counted_units, job = counted[phase]
        assert counted_units == _model_steps(renewals=1, messages=messages)["renew"] == {TABLE: 1, "by_watch": 2}
        assert job.lease_expires_at == job.created_at + 80_000 and job.version == 1  # read back from the lease item
    in_item = _model_steps(renewals=1, messages=BIG_MESSAGES, layout="lease-in-item")["renew"]
    assert in_item[TABLE] >= 60 and in_item["by_watch"] == 2


def test_the_claim_writes_the_job_and_its_lease_item_and_the_finish_ends_the_lease_item(counted):
    """Per step, the model's claim is two writes (the job leaves the watch index, its lease item enters it) and its
    finish two (the job item; the lease item's owner and watch entry removed): two write units a job more than
    with the lease in the job item, three fewer a renewal."""
    after, in_item = _model_steps(), _model_steps(layout="lease-in-item")
    assert after["claim"][TABLE] == in_item["claim"][TABLE] + 1 and after["claim"]["by_watch"] == in_item["claim"]["by_watch"]
    assert after["finish"][TABLE] == in_item["finish"][TABLE] + 1
    assert after["finish"]["by_watch"] == in_item["finish"]["by_watch"] == 1


def test_a_delivered_webhook_is_three_writes_of_the_item_each_in_the_tenant_index_as_modelled(counted):
    """Claimed, its body fixed, its attempt recorded: three writes of the whole item, each changing the delivery
    that a list entry summarises (so each reaches the tenant index); delivered, it leaves the delivery index."""
    counted_units, _ = counted["deliver"]
    modelled = _summed(_model_steps(), ["webhook claim", "webhook body", "webhook attempt"])
    assert counted_units == modelled


def test_after_the_change_a_queued_job_costs_fewer_write_units_than_before():
    before, after = scale.layout("before"), scale.layout("after")
    for renewals in (0, 1, 5):
        old = sum(scale.per_job(before, inline=False, renewals=renewals, webhook=True).units.values())
        new = sum(scale.per_job(after, inline=False, renewals=renewals, webhook=True).units.values())
        assert new < old


def test_with_the_lease_apart_a_long_job_s_renewals_cost_the_same_whatever_its_input():
    """Ten renewals (a 200 s run): with the lease in the job item they cost ten times the item; apart, 3 units each."""
    in_item, after = scale.layout("lease-in-item"), scale.layout("after")
    for input_bytes, saved_at_least in ((600, 0), (scale.BIG_INPUT_BYTES, 600)):
        old = sum(scale.per_job(in_item, inline=False, renewals=10, webhook=True, input_bytes=input_bytes).units.values())
        new = sum(scale.per_job(after, inline=False, renewals=10, webhook=True, input_bytes=input_bytes).units.values())
        assert old - new > saved_at_least
        renewals = [cost for step, cost in scale.per_job(after, inline=False, renewals=10, webhook=True,
                                                         input_bytes=input_bytes).steps if step.startswith("renew")]
        assert renewals == [{TABLE: 1, "by_watch": 2}] * 10


def test_one_tenant_at_300_submissions_a_second_with_10000_running_stays_under_every_partition_limit():
    work = next(w for w in scale.WORKLOADS if w.name == "one-tenant-300")
    assert work.running == pytest.approx(10_000)
    rows = {row.resource.split(" (")[0]: row for row in scale.ceilings(work, scale.layout("after"))}
    for name in ("tenant index", "watch index", "delivery index"):
        assert rows[name].headroom > 1, rows[name]
    before = {row.resource.split(" (")[0]: row for row in scale.ceilings(work, scale.layout("before"))}
    assert before["tenant index"].headroom < 1  # one partition, over its 1,000 WCU/s
    assert rows["tenant index"].headroom >= 10 * before["tenant index"].headroom


def test_the_router_rows_follow_the_layout_s_config():
    from stacks.config import PipelineConfig

    config = PipelineConfig(router_reserved_concurrency=50)
    lay = scale.layout("after", config)
    assert lay.costs is lay.costs  # one cost model a layout, built from its config
    assert lay.costs.lanes == config.lanes()
    work = next(w for w in scale.WORKLOADS if w.name == "one-tenant-300")
    rows = {row.resource.split(" (")[0]: row for row in scale.ceilings(work, lay)}
    assert rows["router: inline runs"].limit == config.inline_concurrency()
    assert rows["router: Lambda concurrency"].limit == config.router_concurrency() == 50
