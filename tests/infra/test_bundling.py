"""PipLocalBundling: the Lambda asset built by pip on this machine, for the Lambda platform, without Docker."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import aws_cdk as cdk
import pytest
from infra_support import REPO

from stacks.config import PipelineConfig
from stacks.constructs import python_lambda
from stacks.constructs.bundling import LAMBDA_ARM64_PLATFORMS, BundlingError, PipLocalBundling
from stacks.constructs.python_lambda import asset_hash


class FakePip:
    """Records the command and plays pip: writes a package into --target, or fails like pip does."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.returncode, self.stderr, self.commands = returncode, stderr, []

    def __call__(self, command, **_kwargs) -> subprocess.CompletedProcess:
        self.commands.append(command)
        target = Path(command[command.index("--target") + 1])
        (target / "somedep").mkdir(parents=True)
        (target / "bin").mkdir()
        return subprocess.CompletedProcess(command, self.returncode, stdout="", stderr=self.stderr)


@pytest.fixture
def source(tmp_path) -> Path:
    src = tmp_path / "src"
    for package in ("jobcore", "router"):
        (src / package / "__pycache__").mkdir(parents=True)
        (src / package / "__init__.py").write_text("")
        (src / package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (src / "jobcore" / "prices.json").write_text("{}")
    (src / "jobcore" / "tests").mkdir()
    (src / "notapackage").mkdir()
    (src / "requirements.txt").write_text("anthropic==2.14.0\n")
    return src


def bundle(source: Path, out: Path, pip: FakePip) -> bool:
    bundler = PipLocalBundling(source_dir=source, requirements=source / "requirements.txt", python_version="3.13",
                               run=pip)
    return bundler.try_bundle(str(out), image=cdk.DockerImage.from_registry("unused"))


def test_pip_targets_the_lambda_platform_with_wheels_only(source, tmp_path):
    pip = FakePip()
    assert bundle(source, tmp_path / "out", pip) is True
    (command,) = pip.commands
    assert command[1:4] == ["-m", "pip", "install"]
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"] == list(LAMBDA_ARM64_PLATFORMS)
    assert "manylinux2014_aarch64" in LAMBDA_ARM64_PLATFORMS
    assert {"--only-binary=:all:", "--no-compile"} <= set(command)
    # A lock file: every file's hash is checked, and nothing it does not list is installed.
    assert {"--require-hashes", "--no-deps"} <= set(command)
    assert command[command.index("--python-version") + 1] == "3.13"
    assert command[command.index("--implementation") + 1] == "cp"


def test_source_packages_are_copied_without_tests_or_caches(source, tmp_path):
    out = tmp_path / "out"
    bundle(source, out, FakePip())
    assert sorted(p.name for p in out.iterdir()) == ["jobcore", "router", "somedep"]
    assert (out / "jobcore" / "prices.json").exists()
    assert not list(out.rglob("__pycache__")) and not (out / "jobcore" / "tests").exists()


def test_a_pip_failure_raises_with_pips_own_words_instead_of_falling_back_to_docker(source, tmp_path):
    pip = FakePip(returncode=1, stderr="ERROR: No matching distribution found for anthropic==99")
    with pytest.raises(BundlingError, match="No matching distribution found for anthropic==99"):
        bundle(source, tmp_path / "out", pip)


@pytest.mark.parametrize("requirements", ["lambda_src/requirements.txt", "container_src/requirements.txt"])
def test_runtime_pins_match_the_versions_tested_here(requirements):
    for line in (REPO / requirements).read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            name = name.split("[")[0]  # an extra (anthropic[bedrock]) names the same distribution
            assert metadata.version(name) == version, f"{requirements}: {name}"


# ---- the asset hash: the sources and the recipe, nothing of this machine


def test_the_recipe_is_pips_arguments_without_anything_of_this_machine(source, tmp_path):
    bundler = PipLocalBundling(source_dir=source, requirements=source / "requirements.txt", python_version="3.13")
    recipe = json.loads(bundler.recipe())
    command = bundler.pip_command("<asset output>")
    command[command.index("--requirement") + 1] = "requirements.txt"  # named relative to the sources
    assert recipe["pip"] == command[1:]
    assert str(tmp_path) not in bundler.recipe() and sys.executable not in bundler.recipe()


def test_the_asset_hash_changes_with_the_recipe_even_when_no_source_does(source):
    def hashed(**changes) -> str:
        options = {"source_dir": source, "requirements": source / "requirements.txt", "python_version": "3.13", **changes}
        return asset_hash(PipLocalBundling(**options))

    assert hashed() == hashed()
    assert hashed(python_version="3.12") != hashed()
    assert hashed(platforms=("manylinux2014_aarch64",)) != hashed()
    assert hashed(platforms=("manylinux2014_x86_64",)) != hashed(platforms=("manylinux2014_aarch64",))
    before = hashed()
    (source / "jobcore" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")  # excluded: no change
    assert hashed() == before
    (source / "requirements.txt").write_text("anthropic==2.15.0\n")  # the lock is a source
    assert hashed() != before


def test_the_lambda_asset_is_a_new_bundle_when_the_recipe_changes(monkeypatch):
    def object_key() -> str:
        stack = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Stack")
        return python_lambda.source_code(PipelineConfig().lanes()).bind(stack).s3_location.object_key

    same_recipe = object_key()
    assert object_key() == same_recipe
    monkeypatch.setattr(python_lambda, "PYTHON_VERSION", "3.14")
    assert object_key() != same_recipe


def test_the_asset_and_the_image_contexts_leave_out_what_the_bundle_does_not_copy():
    from stacks.constructs.bundling import NOT_COPIED
    from stacks.constructs.python_lambda import SOURCE_EXCLUDE
    from stacks.service_stack import WORKER_DOCKERFILES, build_context_exclude

    anywhere = [f"**/{pattern}" for pattern in NOT_COPIED]
    assert list(SOURCE_EXCLUDE) == anywhere
    for dockerfile in WORKER_DOCKERFILES.values():
        assert build_context_exclude(REPO / dockerfile)[-len(anywhere):] == anywhere
