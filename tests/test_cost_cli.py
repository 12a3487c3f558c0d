"""The ``cost`` command, run in-process on the seed article's workload."""

from __future__ import annotations

import json

import pytest

from tools import cost


def run(capsys, *argv: str) -> str:
    assert cost.main(list(argv)) == 0
    return capsys.readouterr().out


def test_the_table_names_the_cheapest_route_for_each_seed_scenario(capsys):
    out = run(capsys)
    assert "cheapest route that can run it: Fargate Spot 0.25 vCPU / 1 GB, $105.18/month" in out
    assert "cheapest route that can run it: Fargate Spot 0.5 vCPU / 1 GB, $3,074.72/month" in out
    assert "cheapest route that can run it: EC2 g5.xlarge (A10G), $4.02/month" in out
    assert "cannot run: 14,400 s is over Lambda's 900 s limit" in out


def test_the_article_section_recomputes_its_figures(capsys):
    out = " ".join(run(capsys).split())  # the notes are wrapped
    assert "Where naive arithmetic goes wrong" in out
    assert "144,000 GB-s × $0.0000166667 = $2.40 at x86 prices" in out
    assert "it forgets the 16 GB of memory ($0.28), $0.93 in all" in out
    assert "4 h × $1.006/h = $4.02" in out
    # The frequency note prices the cpu lane as cdk.json sizes it (1 vCPU / 2 GB; it used the cost model's
    # 4 GB default before lanes, hence 3.24/min then): a Spot month of (0.04048 + 2 × 0.004445) $/h × 0.35
    # × 730 h over what one request saves queued, 8 s of the 1 GB arm64 router less the queue's requests.
    assert "one always-on Fargate Spot worker (1 vCPU / 2 GB, 32 jobs at once) above 2.75/min" in out


def test_json_output_parses(capsys):
    data = json.loads(run(capsys, "--json"))
    assert [t["cheapest"] for t in data["tasks"]] == ["fargate-spot", "fargate-spot", "ec2"]
    assert data["tasks"][2]["options"]["fargate"]["cannot_run"] == ["needs a GPU: Fargate offers none"]
    assert data["article_notes"]


@pytest.mark.slow  # matplotlib's import and a render: 3 s
def test_chart_writes_a_png(capsys, tmp_path):
    chart = tmp_path / "breakeven.png"
    run(capsys, "--chart", str(chart))
    assert chart.read_bytes().startswith(b"\x89PNG") and chart.stat().st_size > 10_000


def test_price_overrides_and_a_yaml_workload(capsys, tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text("tasks:\n  - {name: short, duration_s: 2, memory_mb: 512, monthly_volume: 1000}\n")
    overrides = tmp_path / "p.json"
    overrides.write_text(json.dumps({"lambda": {"request_per_million": 0}}))
    out = run(capsys, str(workload), "--prices", str(overrides))
    assert "hybrid routing: inline:" in out
    assert "Where naive arithmetic goes wrong" not in out  # no article block in this workload


def test_a_bad_override_is_reported_not_raised(capsys, tmp_path):
    overrides = tmp_path / "p.json"
    overrides.write_text(json.dumps({"lamda": {}}))
    assert cost.main(["--prices", str(overrides)]) == 2
    assert "unknown key 'lamda'" in capsys.readouterr().err


@pytest.mark.parametrize("value, text", [(4.024, "$4.02"), (1.19e-5, "$0.000012"), (0, "$0.00"), (1e-8, "<$0.000001")])
def test_money(value, text):
    assert cost.money(value) == text


def test_the_invoice_scenario_shows_the_batch_lane_and_prompt_caching(capsys):
    out = run(capsys)
    assert "  cutting the Claude bill (monthly, against the hybrid route):" in out
    assert "today                 claude   $105.00, total   $105.18  Messages API at list price, no caching" in out
    # 10,000 x (1,500 x 3 + 400 x 15) / 2M = $52.50 of tokens, no worker, 10,000 queued jobs' requests
    assert ("batch lane            claude    $52.50, total    $52.57  saves $52.61 (50%): tokens 50% off, no worker; "
            "latency: up to 24 h, usually minutes") in out
    # 10,000 x (300 x 3 + 1,200 x (0.68 x 0.3 + 0.32 x 3.75) + 400 x 15) / 1M = $85.85
    assert ("prompt caching        claude    $85.85, total    $86.02  saves $19.15 (18%): assumes 1,200 of 1,500 input "
            "tokens a shared prefix, 68% of jobs finding it cached") in out
    assert "batch lane + caching  claude    $42.92, total    $42.99  saves $62.18 (59%)" in out
    data = json.loads(run(capsys, "--json"))
    cuts = {cut["name"]: cut for cut in data["tasks"][0]["claude_cuts"]}
    assert cuts["batch lane"]["claude"] == pytest.approx(52.5) and data["tasks"][2]["claude_cuts"] == []


def test_bedrock_prices_each_task_at_its_profiles_price_and_has_no_batch_lane(capsys):
    """The per-job cost prices a call at the provider that answered it; so does the cost command, for a deployment
    on Bedrock: a geographic profile 10 % over the Anthropic API's list price, the global one at it."""
    def claude(*argv: str) -> float:
        data = json.loads(run(capsys, "--json", *argv))
        return data["tasks"][0]["options"]["hybrid"]["breakdown"]["claude"]

    anthropic = claude()
    assert claude("--provider", "bedrock", "--bedrock-profile", "us") == pytest.approx(anthropic * 1.1)
    assert claude("--provider", "bedrock") == pytest.approx(anthropic)  # the global profile
    out = run(capsys, "--provider", "bedrock", "--bedrock-profile", "eu")
    assert "claude-sonnet-4-6 on Amazon Bedrock (eu profile)" in out
    assert "batch lane            not with Bedrock: the batch lane is Anthropic's Message Batches API" in out


def test_a_provider_that_cannot_serve_a_tasks_model_is_refused_naming_the_field(capsys, tmp_path):
    assert cost.main(["--provider", "bedrock", "--bedrock-profile", "apac"]) == 2
    assert "--provider/--bedrock-profile for 'invoice-processing'.bedrock_profile: model 'claude-sonnet-4-6' has no 'apac'" in (
        capsys.readouterr().err)
    workload = tmp_path / "w.json"
    workload.write_text(json.dumps({"tasks": [{"name": "t", "duration_s": 1, "memory_mb": 128, "monthly_volume": 1,
                                               "provider": "vertex"}]}))
    assert cost.main([str(workload)]) == 2
    assert "workload.tasks[0].provider: must be 'anthropic' or 'bedrock'" in capsys.readouterr().err
