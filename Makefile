# Every target sets itself up: a fresh machine needs only Python 3.11+, Node 20 and npm.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := lambda_src:container_src:.

.PHONY: demo serve test lint synth cost chart bench clean venv

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

## The local pipeline end to end: moto, Claude stand-in, router, worker, webhooks.
demo: venv
	$(PY) -m local.demo

## The local pipeline, kept running on 127.0.0.1:8080 for curl.
serve: venv
	$(PY) -m local.serve --port 8080

## Every test: core, adapters (moto), end to end (local pipeline over HTTP), infrastructure.
test: venv
	$(PY) -m pytest -q

## ruff (lint, import order) and mypy (types), configured in pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## Real CDK CLI synth (default and GPU configs) with local Lambda bundling, then cfn-lint.
synth: venv
	. $(VENV)/bin/activate && bash .ci/synth

## The seed article's scenarios through the cost model.
cost: venv
	$(PY) -m tools.cost workloads/seed-article.json

chart: venv
	$(PY) -m tools.cost workloads/seed-article.json --chart docs/cost-breakeven.png

clean:
	rm -rf $(VENV) cdk.out cdk.out.* node_modules

## Benchmarks (speed goals live here, not in tests): see bench/README.md.
bench: venv
	$(PY) -m bench.bench_pipeline
	$(PY) -m bench.bench_webhooks
	$(PY) -m bench.bench_control
