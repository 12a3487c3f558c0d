"""The worker image: built from container_src/Dockerfile with the repo root as context, narrowed by
.dockerignore to the shared packages and the worker, so CDK's asset staging copies only those."""

from __future__ import annotations

from pathlib import Path

from infra_support import REPO

DOCKERFILE = (REPO / "container_src" / "Dockerfile").read_text()


def staged_context(app) -> Path:
    (staged,) = [p for p in Path(app.app.outdir).glob("asset.*") if (p / "container_src" / "Dockerfile").exists()]
    return staged


def test_staged_context_holds_only_what_the_image_copies(default_app):
    staged = staged_context(default_app)
    top = {p.relative_to(staged).as_posix() for p in staged.glob("*/*")}
    assert top == {"container_src/Dockerfile", "container_src/requirements.txt", "container_src/worker",
                   "lambda_src/jobcore", "lambda_src/jobadapters"}
    everything = [p.relative_to(staged).as_posix() for p in staged.rglob("*")]
    assert not [p for p in everything if p.split("/")[0] in {".venv", "node_modules", ".git", "tests", "local"}
                or "cdk.out" in p or "__pycache__" in p]
    assert sum(p.stat().st_size for p in staged.rglob("*") if p.is_file()) < 2_000_000


def test_image_runs_the_worker_module_as_a_non_root_user():
    assert 'ENTRYPOINT ["python", "-m", "worker.main"]' in DOCKERFILE
    assert "USER 10001" in DOCKERFILE
    assert "PYTHONPATH=/app" in DOCKERFILE
    for source in ("lambda_src/jobcore", "lambda_src/jobadapters", "container_src/worker"):
        assert f"COPY {source} " in DOCKERFILE


def test_image_is_built_for_linux_amd64(default_app):
    assets = default_app.app.outdir
    manifest = (Path(assets) / "JobPipeline-dev-Service.assets.json").read_text()
    assert '"platform": "linux/amd64"' in manifest
