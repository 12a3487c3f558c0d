# Every target sets itself up: a fresh machine needs only Python 3.11+, Node 22 or 24 and npm (docs/deploy.md: Prerequisites).
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := lambda_src:container_src:.
# Python caches compiled modules (__pycache__/, git-ignored) unless PYTHONDONTWRITEBYTECODE is set, as it is on some
# machines (this one's image): then every process compiles our ~200 modules again, and pytest rewrites every test
# module's asserts again in each of its processes (collection took 11.6 s instead of 4 s; every local pipeline process
# paid it too).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo serve intake test test-fast screenshots lint synth lock cost chart bench clean venv openapi browser

$(VENV)/.installed: requirements.txt requirements-dev.txt sdk/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

## The local pipeline end to end: moto, Claude stand-in, router, worker, webhooks (make demo ARGS="--providers bedrock":
## every model call through the SDK's Bedrock client).
demo: venv
	$(PY) -m local.demo $(ARGS)

## The local pipeline, kept running for curl, the CLI and the web console (/console): the API on 127.0.0.1:8080,
## moto on :8081, a webhook receiver on :9999. Options in ARGS (make serve ARGS="--gpu --port 9000"; python -m local.serve --help).
serve: venv
	$(PY) -m local.serve $(ARGS)

## Drop a file into the running pipeline's S3 intake and show its job: make intake ARGS="FILE --task TASK"
## (default: a sample invoice as invoice.extract; python -m local.put_intake --help).
intake: venv
	$(PY) -m local.put_intake $(ARGS)

## Headless Chromium for the web console's browser tests (tests/e2e/test_console.py, Playwright's client with
## this browser: nothing is downloaded at test time). Debian's package, installed where we are root (CI);
## elsewhere the tests skip without it, and fail under CI=true.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make browser: no chromium here; install Debian's chromium package (or set CHROMIUM=/path)"; fi; }

## Every test: core, adapters (moto), end to end (local pipeline over HTTP, the console in Chromium), infrastructure;
## on TEST_WORKERS processes (pytest-xdist): a test file per process at a time, and every test that runs a local
## pipeline in one process (tests/conftest.py says why). pytest exits 5 when it collects nothing: make fails on it.
TEST_WORKERS ?= auto
test: venv browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

## The quick tests (under 30 s on this 2-core machine): the core on fakes, the port contracts, the local stand-ins,
## the cost tools, on TEST_WORKERS processes; not the ones marked slow (pytest.ini says which), which `make test` runs.
FAST_TESTS := tests/core tests/contract tests/local tests/test_cost_cli.py tests/test_gpu_cost.py tests/test_workloads.py
test-fast: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(FAST_TESTS)

## The console's screenshots in docs/console/ (docs/local.md links them), taken by its browser tests.
screenshots: venv browser
	CONSOLE_SCREENSHOTS_DIR=docs/console $(PY) -m pytest -q tests/e2e/test_console.py

## ruff (lint, import order) and mypy (types), configured in pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## The API's OpenAPI 3.1 description, generated from the code (router/openapi.py); a test checks the committed copy.
openapi: venv
	$(PY) -m router.openapi > docs/openapi.json.tmp && mv docs/openapi.json.tmp docs/openapi.json

## Real CDK CLI synth (default and GPU configs) with local Lambda bundling, then cfn-lint.
synth: venv
	. $(VENV)/bin/activate && bash .ci/synth

## Regenerate the hashed lock files from the requirements*.txt pins, each for the platform that installs it
## (needs the package index): the Lambda bundle (Python 3.13, arm64, Amazon Linux 2023), the CPU image
## (python:3.13 slim bookworm, x86_64), the GPU image (Ubuntu 24.04's Python 3.12, x86_64) and its model stage.
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --custom-compile-command "make lock"
lock: venv
	$(LOCK) --python-version 3.13 --python-platform aarch64-manylinux_2_34 lambda_src/requirements.txt -o lambda_src/requirements.lock
	$(LOCK) --python-version 3.13 --python-platform x86_64-manylinux_2_36 container_src/requirements.txt -o container_src/requirements.lock
	$(LOCK) --python-version 3.12 --python-platform x86_64-manylinux_2_39 container_src/requirements-gpu.txt -o container_src/requirements-gpu.lock
	$(LOCK) --python-version 3.13 --python-platform x86_64-manylinux_2_36 container_src/requirements-model.txt -o container_src/requirements-model.lock

## The seed article's scenarios through the cost model, then where the GPU lane pays off (embeddings.encode).
cost: venv
	$(PY) -m tools.cost workloads/seed-article.json
	$(PY) -m tools.gpu_cost

chart: venv
	$(PY) -m tools.cost workloads/seed-article.json --chart docs/cost-breakeven.png

clean:
	rm -rf $(VENV) cdk.out cdk.out.* node_modules

## Benchmarks (speed goals live here, not in tests): see bench/README.md.
bench: venv
	$(PY) -m bench.bench_latency
	$(PY) -m bench.bench_pipeline
	$(PY) -m bench.bench_webhooks
	$(PY) -m bench.bench_control
	$(PY) -m bench.bench_storm
	$(PY) -m bench.bench_embeddings
	$(PY) -m bench.bench_batch
	$(PY) -m bench.bench_capacity
	$(PY) -m bench.bench_failover
