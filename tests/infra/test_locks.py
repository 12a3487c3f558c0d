"""The hashed lock files: complete (every package pinned with hashes), in step with the requirements they
are compiled from, resolved for the platform that installs them, and the only thing that installs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from infra_support import REPO

from stacks.constructs.bundling import LAMBDA_ARM64_PLATFORMS
from stacks.constructs.python_lambda import LAMBDA_REQUIREMENTS, PYTHON_VERSION, lambda_bundling

# requirements file -> its lock (`make lock` compiles each from the other)
LOCKS = {
    "lambda_src/requirements.txt": "lambda_src/requirements.lock",
    "container_src/requirements.txt": "container_src/requirements.lock",
    "container_src/requirements-gpu.txt": "container_src/requirements-gpu.lock",
    "container_src/requirements-model.txt": "container_src/requirements-model.lock",
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: str) -> dict[str, str]:
    """name -> version of every `name==version` line (comments and options left out)."""
    found = {}
    for line in (REPO / path).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            found[canonical(match[1])] = match[3]
    return found


def lock_entries(path: str) -> dict[str, list[str]]:
    """Each requirement of a lock (its logical line, continuations joined) -> its --hash options."""
    text = re.sub(r"\\\n", " ", (REPO / path).read_text())
    entries = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        requirement, *options = shlex.split(line)
        assert _PIN.match(requirement), f"{path}: {requirement!r} is not pinned with =="
        entries[requirement] = options
    return entries


def make_lock_line(lock: str) -> list[str]:
    """The `make lock` command that writes ``lock`` (Makefile), its $(LOCK) prefix expanded away."""
    makefile = (REPO / "Makefile").read_text()
    (line,) = [line for line in makefile.splitlines() if line.startswith("\t$(LOCK)") and line.endswith(f"-o {lock}")]
    return shlex.split(line.strip())


@pytest.mark.parametrize("lock", sorted(LOCKS.values()))
def test_every_requirement_of_a_lock_is_pinned_with_sha256_hashes(lock):
    entries = lock_entries(lock)
    assert entries, f"{lock} is empty"
    for requirement, options in entries.items():
        hashes = [option for option in options if option.startswith("--hash=")]
        assert hashes and all(h.startswith("--hash=sha256:") and len(h) == len("--hash=sha256:") + 64 for h in hashes), (
            f"{lock}: {requirement} has no sha256 hash")
        assert set(options) == set(hashes), f"{lock}: {requirement} has options other than hashes: {options}"


@pytest.mark.parametrize(("requirements", "lock"), sorted(LOCKS.items()))
def test_every_top_level_pin_is_in_its_lock_at_the_same_version(requirements, lock):
    wanted, locked = pins(requirements), pins(lock)
    assert wanted, f"{requirements} pins nothing"
    assert {name: locked.get(name) for name in wanted} == wanted, f"{lock} drifted from {requirements}: run `make lock`"


def test_the_gpu_image_pins_the_cpu_images_packages_with_onnxruntime_gpu_for_onnxruntime():
    cpu, gpu = pins("container_src/requirements.txt"), pins("container_src/requirements-gpu.txt")
    assert {k: v for k, v in cpu.items() if k != "onnxruntime"} == {k: v for k, v in gpu.items() if k != "onnxruntime-gpu"}
    assert "onnxruntime" in cpu and "onnxruntime-gpu" in gpu
    # Both install the module `onnxruntime`: one image must never get both.
    assert "onnxruntime" not in pins("container_src/requirements-gpu.lock")
    assert "onnxruntime-gpu" not in pins("container_src/requirements.lock")


def test_the_cpu_image_pins_the_versions_the_shared_runtime_is_tested_with():
    # The root requirements (this virtualenv) carry the embedding executor too, at the CPU image's versions.
    root, cpu = pins("requirements.txt"), pins("container_src/requirements.txt")
    assert {name: root.get(name) for name in cpu} == cpu


def test_locks_are_resolved_for_the_platform_that_installs_them():
    from_image = re.search(r"^FROM python:(\d+\.\d+)\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$",
                           (REPO / "container_src/Dockerfile").read_text(), re.M)
    assert from_image, "the CPU image's base is python:<x.y.z>-slim-bookworm"

    def target(lock: str) -> tuple[str, str]:
        line = make_lock_line(lock)
        return line[line.index("--python-version") + 1], line[line.index("--python-platform") + 1]

    # The Lambda: its runtime's Python on arm64, manylinux up to the newest tag the bundler asks pip for.
    assert target("lambda_src/requirements.lock") == (PYTHON_VERSION, "aarch64-" + LAMBDA_ARM64_PLATFORMS[-1].removesuffix("_aarch64"))
    # The CPU image and the GPU image's model stage: python:3.13 on bookworm (glibc 2.36), x86_64.
    assert target("container_src/requirements.lock") == (from_image[1], "x86_64-manylinux_2_36")
    assert target("container_src/requirements-model.lock") == (from_image[1], "x86_64-manylinux_2_36")
    # The GPU image: Ubuntu 24.04's own Python 3.12 (glibc 2.39), x86_64.
    assert "ubuntu24.04" in (REPO / "container_src/Dockerfile.gpu").read_text()
    assert target("container_src/requirements-gpu.lock") == ("3.12", "x86_64-manylinux_2_39")


def test_the_lambda_bundle_installs_the_lock_with_hashes_required():
    command = lambda_bundling().pip_command("/tmp/out")
    assert command[command.index("--requirement") + 1] == str(LAMBDA_REQUIREMENTS)
    assert Path(LAMBDA_REQUIREMENTS).name == "requirements.lock" and Path(LAMBDA_REQUIREMENTS).parent.name == "lambda_src"
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(command)
