"""Bundles a Python Lambda asset with pip on this machine: no Docker needed at synth."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import DockerImage, ILocalBundling

# Lambda's Python runtimes on arm64 run Amazon Linux 2023 (glibc 2.34): any of these wheels load there.
# pip does not widen a --platform to older manylinux tags by itself, so each is named.
LAMBDA_ARM64_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
NOT_COPIED = ("__pycache__", "*.pyc", "tests")  # of the source packages: the one list of what no asset or image holds
# The same as asset and Docker build-context exclude patterns, which match at any depth only with a leading "**/".
NOT_COPIED_ANYWHERE = tuple(f"**/{pattern}" for pattern in NOT_COPIED)

Runner = Callable[..., subprocess.CompletedProcess]


class BundlingError(RuntimeError):
    """pip could not produce the Lambda's dependencies; the message carries pip's own output."""


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """``try_bundle`` pip-installs ``requirements`` (a lock file: every package pinned, with hashes) for the
    Lambda platform into the asset, then copies the source packages (every directory of ``source_dir``
    holding an ``__init__.py``, without tests or caches) and writes the ``generated`` files (the lane document).

    pip runs with ``--require-hashes`` (a wheel whose hash the lock does not list is refused, whatever the
    index serves) and ``--no-deps`` (the lock already holds the whole tree, resolved for this platform by
    ``make lock``; pip resolving again would evaluate markers for this machine's Python, not the Lambda's).

    A pip failure raises :class:`BundlingError` with pip's output instead of returning False, which would
    make CDK fall back to Docker and report a confusing Docker error.
    """

    def __init__(self, *, source_dir: Path, requirements: Path, python_version: str,
                 platforms: Sequence[str] = LAMBDA_ARM64_PLATFORMS, run: Runner = subprocess.run,
                 generated: Mapping[str, str] | None = None) -> None:
        self.source_dir = source_dir
        self.requirements = requirements
        self.python_version = python_version
        self.platforms = tuple(platforms)
        self.generated = dict(generated or {})  # file name (at the asset's root) -> its text, made at synth
        self._run = run

    def pip_command(self, output_dir: str) -> list[str]:
        return [sys.executable, *self._pip_args(output_dir, str(self.requirements))]

    def recipe(self) -> str:
        """How the bundle is made, apart from the sources: pip's arguments (the target platforms, Python version,
        implementation, flags; the lock named relative to the sources) and what the copy leaves out. The asset
        hash covers it (:func:`stacks.constructs.python_lambda.asset_hash`): a changed recipe is a new bundle even
        when no source changed. Nothing machine-specific (no absolute path, not this machine's Python)."""
        requirements = (self.requirements.relative_to(self.source_dir).as_posix()
                        if self.requirements.is_relative_to(self.source_dir) else self.requirements.name)
        return json.dumps({"pip": self._pip_args("<asset output>", requirements), "not_copied": NOT_COPIED,
                           "generated": dict(sorted(self.generated.items()))})

    def _pip_args(self, output_dir: str, requirements: str) -> list[str]:
        platform_args = [arg for platform in self.platforms for arg in ("--platform", platform)]
        return [
            "-m", "pip", "install", "--requirement", requirements, "--require-hashes",
            "--no-deps", "--target", output_dir, *platform_args, "--implementation", "cp", "--python-version", self.python_version,
            "--only-binary=:all:", "--no-compile", "--disable-pip-version-check", "--quiet",
        ]

    def packages(self) -> list[Path]:
        return sorted(p for p in self.source_dir.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        result = self._run(self.pip_command(output_dir), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BundlingError(
                f"pip could not bundle {self.requirements} for the Lambda (exit {result.returncode}).\n"
                f"command: {' '.join(result.args)}\n{result.stdout}{result.stderr}")
        shutil.rmtree(Path(output_dir) / "bin", ignore_errors=True)  # console scripts: no use in a Lambda
        for package in self.packages():
            shutil.copytree(package, Path(output_dir) / package.name, ignore=shutil.ignore_patterns(*NOT_COPIED),
                            dirs_exist_ok=True)
        for name, text in self.generated.items():
            (Path(output_dir) / name).write_text(text, encoding="utf-8")
        return True
