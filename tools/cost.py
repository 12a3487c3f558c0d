"""The ``cost`` command: a workload's monthly cost on all-Lambda, all-Fargate, all-EC2 and this
pipeline's hybrid routing, the cheapest route that can actually run each task, and the break-even chart.

    python -m tools.cost [WORKLOAD.json|.yaml] [--prices OVERRIDES.json] [--chart PATH.png] [--json]

Without a workload it prices the seed article's three scenarios (``workloads/seed-article.json``) and,
because that file quotes the article's own figures, says where the article's arithmetic goes wrong.
Every figure is computed from ``jobcore/prices.json`` (plus any overrides); none is typed in here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "lambda_src") not in sys.path:  # `python -m tools.cost` from a bare checkout
    sys.path.insert(0, str(ROOT / "lambda_src"))

from jobcore.costing import MB_PER_GB, SECONDS_PER_HOUR, break_even_rate_per_min, lambda_compute, lambda_requests
from jobcore.lanes import FargateCompute, Lane, Lanes
from jobcore.limits import LAMBDA_MAX_DURATION_S, LAMBDA_MAX_MEMORY_MB
from jobcore.pricing import Prices, default_prices
from jobcore.providers import ANTHROPIC, BEDROCK
from stacks.config import PipelineConfig
from tools.workloads import (
    Comparison,
    Option,
    TaskComparison,
    WorkloadTask,
    check_provider,
    compare,
    fargate_task,
    lambda_memory_mb,
    load_workload,
    monthly_ec2,
    monthly_fargate,
    monthly_lambda,
)

SEED_WORKLOAD = ROOT / "workloads" / "seed-article.json"
CDK_JSON = ROOT / "cdk.json"


def deployment_lanes() -> Lanes:
    """The lanes ``cdk deploy`` builds from cdk.json: the sizes the notes and the chart price."""
    return PipelineConfig.from_mapping(json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]).lanes()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        prices = default_prices()
        if args.prices:
            prices = prices.with_overrides(_read(args.prices))
        data = _read(args.workload)
        lanes = deployment_lanes()
        tasks = served_by(load_workload(data, prices), prices, args.provider, args.bedrock_profile)
        comparison = compare(tasks, prices, inline_budget_s=lanes.inline.time_limit_s, router_memory_mb=lanes.inline.memory_mb)
    except (OSError, ValueError) as error:
        print(f"cost: {error}", file=sys.stderr)
        return 2
    notes = article_notes(data.get("article", {}), comparison, prices, lanes) if isinstance(data, Mapping) else []
    if args.json:
        print(json.dumps({**comparison.to_dict(), "article_notes": notes}, indent=2))
    else:
        print(render(comparison, notes))
    if args.chart:
        article = data.get("article", {}) if isinstance(data, Mapping) else {}
        draw_chart(prices, lanes, args.chart, article_rates=article.get("frequency"))
        print(f"chart: {args.chart}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.cost", description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?", type=Path, default=SEED_WORKLOAD, help="JSON or YAML workload")
    parser.add_argument("--prices", type=Path, help="JSON or YAML price overrides, merged over prices.json")
    parser.add_argument("--chart", type=Path, help="also draw the break-even chart to this PNG")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--provider", choices=(ANTHROPIC, BEDROCK),
                        help="price every task's Claude calls at this provider's prices (default: each task's own, else anthropic)")
    parser.add_argument("--bedrock-profile", help="with Bedrock: the inference profile scope, e.g. global, us, eu (default: global)")
    return parser.parse_args(argv)


def served_by(tasks: Sequence[WorkloadTask], prices: Prices, provider: str | None, profile: str | None) -> tuple[WorkloadTask, ...]:
    """The tasks with their calls answered by ``provider`` through ``profile`` where given (ValueError if it cannot
    serve a task's model)."""
    changed = []
    for task in tasks:
        task = replace(task, provider=provider or task.provider, bedrock_profile=profile or task.bedrock_profile)
        check_provider(task, prices, f"--provider/--bedrock-profile for {task.name!r}")
        changed.append(task)
    return tuple(changed)


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".yaml", ".yml"}:
        import yaml  # a dev tool's dependency: only YAML workloads need it

        return yaml.safe_load(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: {error}") from None


# -- the table -------------------------------------------------------------------------------------

def render(comparison: Comparison, notes: list[str]) -> str:
    """The comparison as text: one table per task, the totals, then the notes on the article."""
    parts = [f"Monthly cost in {comparison.currency}, prices as of {comparison.prices_as_of}"]
    parts += [_task_table(row) for row in comparison.tasks]
    parts.append(_totals(comparison))
    if notes:
        parts.append("Where naive arithmetic goes wrong\n" + "\n".join(_bullet(note) for note in notes))
    return "\n\n".join(parts)


def _task_table(row: TaskComparison) -> str:
    width = max(len(option.route) for option in row.options.values())
    head = f"  {'strategy':<13} {'route':<{width}} {'claude':>11} {'compute':>11} {'requests':>11} {'total':>11}"
    lines = [_describe(row.task), head] + [_option_line(s, o, width) for s, o in row.options.items()]
    cheapest = row.best if row.cheapest else None
    if cheapest is None:
        lines.append("  cheapest route that can run it: none")
    else:
        lines.append(f"  cheapest route that can run it: {cheapest.route}, {money(cheapest.priced.total)}/month")
    lines.append(f"  hybrid routing: {row.hybrid_reason}")
    lines += _cuts(row)
    return "\n".join(lines)


def _cuts(row: TaskComparison) -> list[str]:
    """The task's Claude bill cut by the batch lane and by prompt caching, against the hybrid route today."""
    if not row.cuts:
        return []
    lines = ["  cutting the Claude bill (monthly, against the hybrid route):"]
    for cut in row.cuts:
        if cut.total is None or cut.claude is None:
            lines.append(f"    {cut.name:<21} {cut.note}")
            continue
        saves = f"saves {money(cut.saves)} ({cut.saves / (cut.total + cut.saves):.0%})" if cut.saves > 0 else ""
        figures = f"claude {money(cut.claude):>9}, total {money(cut.total):>9}"
        lines.append(f"    {cut.name:<21} {figures}  {saves + ': ' if saves else ''}{cut.note}")
    return lines


def _describe(task: WorkloadTask) -> str:
    size = f"{task.vcpu:g} vCPU, {task.memory_mb:,} MB" + (f", {task.gpu_model or 'a'} GPU" if task.gpu else "")
    volume = "always on" if task.always_on else "scaled to demand"
    served = f" on Amazon Bedrock ({task.bedrock_profile} profile)" if task.provider == BEDROCK else ""
    tokens = f"; {task.model}{served}, {task.input_tokens:,} in / {task.output_tokens:,} out tokens" if task.model else ""
    jobs = "job" if task.monthly_volume == 1 else "jobs"
    return (f"{task.name}: {task.monthly_volume:,.0f} {jobs}/month of {task.duration_s:,g} s, {size}, "
            f"{task.concurrency} at a time per worker, {volume}{tokens}")


def _option_line(strategy: str, option: Option, width: int) -> str:
    start = f"  {strategy:<13} {option.route:<{width}}"
    if option.cost is None:
        return f"{start} cannot run: {'; '.join(option.cannot_run)}"
    cost = option.cost
    figures = (cost.claude, cost.compute, cost.requests, cost.total)
    return start + "".join(f" {money(x):>11}" for x in figures)


def _totals(comparison: Comparison) -> str:
    lines = ["Monthly totals by strategy (every task it can run)"]
    for strategy, (total, cannot) in comparison.totals().items():
        missing = f"   cannot run: {', '.join(cannot)}" if cannot else ""
        lines.append(f"  {strategy:<13} {money(total):>12}{missing}")
    return "\n".join(lines)


def _bullet(text: str, width: int = 100) -> str:
    lines, line = [], "-"
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = " "
        line += " " + word
    return "\n".join([*lines, line])


def money(value: float) -> str:
    """Dollars to the cent, or to the micro-dollar below a cent (per-job and request figures)."""
    if value == 0 or value >= 0.01:
        return f"${value:,.2f}"
    return f"${value:.6f}".rstrip("0") if value >= 5e-7 else "<$0.000001"


def quoted(value: float) -> str:
    """A figure quoted from the article, as the article wrote it ($245, $0.64, $0.002)."""
    return f"${value:,g}"


def price(value: float) -> str:
    """A unit price as the price list writes it ($0.0000166667), not in float notation."""
    return f"${value:.10f}".rstrip("0").rstrip(".")


# -- where the article's figures go wrong ----------------------------------------------------------

def article_notes(article: Mapping[str, Any], comparison: Comparison, prices: Prices, lanes: Lanes) -> list[str]:
    """Sentences that recompute the figures a workload file quotes from the article (its "article" block)."""
    rows = {row.task.name: row for row in comparison.tasks}
    checks: list[tuple[str, Callable[..., list[str]]]] = [
        ("fine_tune", _fine_tune_notes), ("invoice", _invoice_notes), ("continuous", _continuous_notes),
    ]
    notes = [line for key, check in checks if key in article for line in check(article[key], rows, prices)]
    if "frequency" in article:
        notes += _frequency_notes(article["frequency"], prices, lanes)
    return notes + [_flat_price_note(prices)] if notes else []


def _fine_tune_notes(claims: Mapping[str, Any], rows: Mapping[str, TaskComparison], prices: Prices) -> list[str]:
    row = rows[claims["task"]]
    task, hours = row.task, row.task.duration_s / SECONDS_PER_HOUR
    max_mb = LAMBDA_MAX_MEMORY_MB
    on_lambda = lambda_compute(prices, duration_s=task.duration_s, memory_mb=max_mb, arch="x86_64")
    lambda_note = (
        f"Fine-tuning on Lambda: the article says ~{quoted(claims['claimed_lambda_usd'])}. {hours:g} h × {max_mb:,} MB "
        f"is {task.duration_s:,.0f} s × {max_mb / MB_PER_GB:g} GB = {task.duration_s * max_mb / MB_PER_GB:,.0f} GB-s "
        f"× {price(prices.lambda_.gb_second['x86_64'])} = {money(on_lambda)} at x86 prices, "
        f"{claims['claimed_lambda_usd'] / on_lambda:,.0f}× less. And Lambda cannot run it at all: "
        f"{'; '.join(row.options['lambda'].cannot_run)}."
    )
    return [lambda_note, _fine_tune_fargate_note(claims, row, prices)]


def _fine_tune_fargate_note(claims: Mapping[str, Any], row: TaskComparison, prices: Prices) -> str:
    task, hours = row.task, row.task.duration_s / SECONDS_PER_HOUR
    vcpu_only = fargate_task(prices, vcpu=task.vcpu, memory_mb=0, seconds=task.duration_s, spot=False)
    full = fargate_task(prices, vcpu=task.vcpu, memory_mb=task.memory_mb, seconds=task.duration_s, spot=False)
    ec2 = row.best if row.cheapest else None
    real = (f"The real option is {ec2.route}: {hours:g} h × {price(ec2.priced.compute / hours)}/h = {money(ec2.priced.compute)}"
            if ec2 else "Nothing priced can run it")
    return (
        f"Fine-tuning on Fargate: the article's {quoted(claims['claimed_fargate_usd'])} is {hours:g} h × "
        f"{task.vcpu:g} vCPU at a vCPU-hour price ({money(vcpu_only)} at "
        f"{price(prices.fargate.rates['x86_64'].vcpu_hour)}); it forgets the {task.memory_mb / MB_PER_GB:g} GB "
        f"of memory ({money(full - vcpu_only)}), {money(full)} in all. And Fargate has no GPU, so it cannot run "
        f"the job either: the article's 'Fargate is {claims['claimed_ratio']}x cheaper' compares two routes that "
        f"cannot run it. {real}."
    )


def _invoice_notes(claims: Mapping[str, Any], rows: Mapping[str, TaskComparison], prices: Prices) -> list[str]:
    row = rows[claims["task"]]
    task, on_lambda = row.task, row.options["lambda"].priced
    memory = lambda_memory_mb(prices, task)
    x86 = task.monthly_volume * lambda_compute(prices, duration_s=task.duration_s, memory_mb=memory, arch="x86_64")
    best = row.best
    return [
        f"Invoices: the article prices {task.monthly_volume:,.0f} invoices at {quoted(claims['claimed_requests_usd'])} "
        f"+ compute. The Lambda requests are {money(lambda_requests(prices, task.monthly_volume))} indeed, but "
        f"{task.duration_s:g} s × {memory:,} MB each is {task.monthly_volume * task.duration_s * memory / MB_PER_GB:,.0f} GB-s "
        f"= {money(on_lambda.compute)} on arm64 ({money(x86)} on x86), and Claude's tokens "
        f"({task.input_tokens:,} in / {task.output_tokens:,} out on {task.model}) cost {money(on_lambda.claude)}: "
        f"{on_lambda.claude / on_lambda.total:.0%} of the bill, the same on every route.",
        f"Invoices, continued: Lambda bills every second a call waits on Claude; {best.route}, running "
        f"{task.concurrency} calls at once per task, bills {money(best.priced.compute)} of compute for the month "
        f"against Lambda's {money(on_lambda.compute)}. Hybrid routing: {row.hybrid_reason}.",
    ]


def _continuous_notes(claims: Mapping[str, Any], rows: Mapping[str, TaskComparison], prices: Prices) -> list[str]:
    row = rows[claims["task"]]
    task, on_lambda = row.task, row.options["lambda"].priced
    spot, on_demand = row.options["fargate-spot"], row.options["fargate"]
    per_s = task.monthly_volume / (prices.hours_per_month * SECONDS_PER_HOUR)
    requests = spot.priced.requests
    than = "more than" if requests > spot.priced.compute else "less than"
    return [
        f"Continuous documents at {per_s:,g}/s ({task.monthly_volume:,.0f} a month): the article blames Lambda's "
        f"cold starts, but at that rate execution environments stay warm; what costs is the busy second. Lambda "
        f"bills {money(on_lambda.compute)} of compute; {spot.route} ({spot.priced.basis}) {money(spot.priced.compute)}, "
        f"on-demand {money(on_demand.priced.compute)}. The per-request charges (API Gateway, router, DynamoDB, "
        f"SQS) come to {money(requests)} a month, {than} the compute on the cheapest route."
    ]


def _fargate_worker(lanes: Lanes, *, spot: bool) -> Lane:
    """The deployment's CPU lane, on Spot or on-demand Fargate."""
    worker = lanes.fallback
    if not isinstance(worker.compute, FargateCompute):
        raise ValueError(f"lanes.{worker.name}: the notes and the chart compare a Fargate worker")
    return replace(worker, compute=replace(worker.compute, spot=spot))


def _frequency_notes(claims: Mapping[str, Any], prices: Prices, lanes: Lanes) -> list[str]:
    duration, inline = claims["example_duration_s"], lanes.inline
    spot, on_demand = (
        break_even_rate_per_min(prices, expected_duration_s=duration, inline=inline, worker=_fargate_worker(lanes, spot=s))
        for s in (True, False)
    )
    if spot is None or on_demand is None:
        return []
    worker = _fargate_worker(lanes, spot=True)
    size = worker.compute
    assert isinstance(size, FargateCompute)
    article_per_min = claims["claimed_fargate_above_per_s"] * 60
    return [
        f"Frequency: the article keeps Lambda below {claims['claimed_lambda_below_per_min']}/min and moves to "
        f"Fargate above {claims['claimed_fargate_above_per_s']}/s. For work that waits on Claude the line is far "
        f"lower: a call of {duration:g} s in the {inline.memory_mb:,} MB router Lambda costs more inline than "
        f"one always-on Fargate Spot worker ({size.vcpu:g} vCPU / {size.memory_mb / MB_PER_GB:g} GB, "
        f"{worker.concurrency} jobs at once) above {spot:.2f}/min ({on_demand:.2f}/min on-demand), "
        f"{article_per_min / spot:,.0f}× below the article's {claims['claimed_fargate_above_per_s']}/s."
    ]


def _flat_price_note(prices: Prices) -> str:
    lam = prices.lambda_
    return (
        f"Duration: Lambda does not 'charge heavily for the 11-15 minute range'. A GB-second costs "
        f"{price(lam.gb_second['arm64'])} (arm64) in minute 14 as in second 1; what stops long jobs is the "
        f"{LAMBDA_MAX_DURATION_S:,} s limit, and past it the job is not dearer on Lambda, it is impossible."
    )


# -- the chart -------------------------------------------------------------------------------------

def draw_chart(prices: Prices, lanes: Lanes, path: Path, *, article_rates: Mapping[str, Any] | None = None) -> None:
    """Two panels, log-log: monthly cost against job duration, and against request rate.

    ``article_rates`` (the workload's quoted rules of thumb) adds the article's thresholds to the second.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6.2), constrained_layout=True)
    _duration_panel(left, prices)
    _rate_panel(right, prices, lanes)
    if article_rates:
        _article_rates(right, article_rates)
    fig.suptitle(
        f"Monthly cost of compute + requests, us-east-1 prices as of {prices.as_of} "
        "(Claude tokens left out: they cost the same on every route)", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


_COLOURS = {"lambda": "#d62728", "fargate-spot": "#1f77b4", "fargate": "#17becf", "ec2": "#2ca02c"}


def _series(points: Sequence[float], option_at: Callable[[float], Option]) -> list[float]:
    costs = [option_at(x).cost for x in points]
    return [cost.total if cost else math.nan for cost in costs]


def _log_points(low: float, high: float, count: int = 240) -> list[float]:
    step = (math.log10(high) - math.log10(low)) / (count - 1)
    return [10 ** (math.log10(low) + i * step) for i in range(count)]


def _duration_panel(ax: Any, prices: Prices, volume: float = 10_000) -> None:
    """A CPU-bound job (1 vCPU / 2 GB, one at a time), ``volume`` a month, scaled to demand."""
    job = WorkloadTask(name="job", duration_s=1, memory_mb=2048, vcpu=1, monthly_volume=volume)
    gpu_job = replace(job, memory_mb=16384, vcpu=4, gpu=True, gpu_model="A10G")
    durations = _log_points(1, 8 * SECONDS_PER_HOUR)
    lines = {
        "lambda": lambda d: monthly_lambda(prices, replace(job, duration_s=d)),
        "fargate-spot": lambda d: monthly_fargate(prices, replace(job, duration_s=d), spot=True),
        "fargate": lambda d: monthly_fargate(prices, replace(job, duration_s=d), spot=False),
        "ec2": lambda d: monthly_ec2(prices, replace(gpu_job, duration_s=d)),
    }
    _axes(ax, "job duration (s)",
          f"Against job duration: {volume:,.0f} CPU-bound jobs a month, one per run, 60 s minimum on Fargate/EC2")
    for key, option_at in lines.items():
        label = option_at(60).route + (": a GPU job, 4 vCPU / 16 GB" if key == "ec2" else "")
        ax.plot(durations, _series(durations, option_at), color=_COLOURS[key], label=label, linewidth=2)
    limit = LAMBDA_MAX_DURATION_S
    ax.axvline(limit, color=_COLOURS["lambda"], linestyle=":", linewidth=1.5)
    ax.text(limit * 1.15, 0.97, f"Lambda stops\nat {limit:,.0f} s", transform=ax.get_xaxis_transform(),
            color=_COLOURS["lambda"], fontsize=9, va="top")
    marks = {"fargate-spot": ("Fargate Spot", (25, -45)), "fargate": ("Fargate on-demand", (-120, 50))}
    for key, (name, offset) in marks.items():
        _mark_crossing(ax, lines["lambda"], lines[key], 1, limit, name=name, colour=_COLOURS[key], offset=offset)
    ax.legend(loc="upper left", fontsize=9)


def _rate_panel(ax: Any, prices: Prices, lanes: Lanes, duration_s: float = 8.0) -> None:
    """One task of ``duration_s``: inline in the router Lambda, or on always-on workers."""
    per_month = prices.hours_per_month * 60
    lane = _fargate_worker(lanes, spot=True)
    size = lane.compute
    assert isinstance(size, FargateCompute)
    inline = WorkloadTask(name="job", duration_s=duration_s, memory_mb=lanes.inline.memory_mb, monthly_volume=1)
    worker = replace(inline, memory_mb=size.memory_mb, vcpu=size.vcpu, concurrency=lane.concurrency, always_on=True)
    gpu = replace(inline, memory_mb=16384, vcpu=4, gpu=True, gpu_model="A10G", always_on=True)
    lines = {
        "lambda": lambda r: monthly_lambda(prices, replace(inline, monthly_volume=r * per_month), label="inline: router"),
        "fargate-spot": lambda r: monthly_fargate(prices, replace(worker, monthly_volume=r * per_month), spot=True),
        "fargate": lambda r: monthly_fargate(prices, replace(worker, monthly_volume=r * per_month), spot=False),
        "ec2": lambda r: monthly_ec2(prices, replace(gpu, monthly_volume=r * per_month)),
    }
    _axes(ax, "requests per minute",
          f"Against request rate: jobs of {duration_s:g} s that wait on Claude, inline or on always-on workers")
    rates = _log_points(0.01, 10_000, 400)
    suffix = {"fargate-spot": f" workers, {lane.concurrency} jobs each", "fargate": " workers",
              "ec2": " always on, 1 job per GPU"}
    for key, option_at in lines.items():
        ax.plot(rates, _series(rates, option_at), color=_COLOURS[key], linewidth=2,
                label=option_at(1).route + suffix.get(key, ""))
    for key, spot, offset in (("fargate-spot", True, (75, -75)), ("fargate", False, (-175, 35))):
        _mark_break_even(ax, prices, lanes, duration_s, spot, lines["lambda"], _COLOURS[key], offset)
    ax.legend(loc="upper left", fontsize=9)


def _article_rates(ax: Any, claims: Mapping[str, Any]) -> None:
    lines = (  # (rate, label, which side of the line the label goes)
        (claims["claimed_lambda_below_per_min"], f"article: Lambda below {claims['claimed_lambda_below_per_min']}/min", 1.12),
        (claims["claimed_fargate_above_per_s"] * 60, f"article: Fargate above {claims['claimed_fargate_above_per_s']}/s", 1 / 1.12),
    )
    for rate, text, side in lines:
        ax.axvline(rate, color="grey", linestyle="--", linewidth=1)
        ax.text(rate * side, 0.03, text, transform=ax.get_xaxis_transform(), rotation=90, color="dimgrey",
                fontsize=9, va="bottom", ha="left" if side > 1 else "right")


def _axes(ax: Any, xlabel: str, title: str) -> None:
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="USD per month")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)


def _label(ax: Any, text: str, point: tuple[float, float], colour: str, offset: tuple[int, int]) -> None:
    ax.plot([point[0]], [point[1]], "o", color=colour, markersize=8, zorder=5)
    ax.annotate(text, point, xytext=offset, textcoords="offset points", fontsize=9, color=colour, zorder=6,
                bbox={"boxstyle": "round", "fc": "white", "ec": colour, "alpha": 0.95},
                arrowprops={"arrowstyle": "-", "color": colour})


def _mark_break_even(ax: Any, prices: Prices, lanes: Lanes, duration_s: float, spot: bool,
                     inline_at: Callable[[float], Option], colour: str, offset: tuple[int, int]) -> None:
    rate = break_even_rate_per_min(prices, expected_duration_s=duration_s, inline=lanes.inline,
                                   worker=_fargate_worker(lanes, spot=spot))
    if rate is None:
        return
    cost = inline_at(rate).priced.total
    kind = "Spot" if spot else "on-demand"
    _label(ax, f"worker cheaper above {rate:.2f}/min\n({kind}, {money(cost)}/month)", (rate, cost), colour, offset)


def _mark_crossing(ax: Any, first: Callable[[float], Option], second: Callable[[float], Option],
                   low: float, high: float, *, name: str, colour: str, offset: tuple[int, int]) -> None:
    """Mark where two cost lines cross between ``low`` and ``high`` (bisection on a log scale)."""
    def gap(x: float) -> float:
        return first(x).priced.total - second(x).priced.total

    if gap(low) * gap(high) > 0:
        return
    for _ in range(60):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if gap(low) * gap(middle) > 0 else (low, middle)
    cost = second(low).priced.total
    _label(ax, f"above {low:.0f} s Lambda costs\nmore than {name}", (low, cost), colour, offset)


if __name__ == "__main__":
    sys.exit(main())
