"""The pipeline's Python Lambda functions: one code asset (``lambda_src``) and one way to make a function of it.

The router, the webhook dispatcher's functions and the job sweeper run the same packages (``jobcore``, ``jobadapters``,
their handlers) from the same asset, so :func:`source_code` is made once per stack and handed to each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import AssetHashType, BundlingOptions, Duration, FileSystem, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from jobcore.lanes import Lanes
from stacks.constructs.bundling import NOT_COPIED_ANYWHERE, PipLocalBundling
from stacks.constructs.nag import acknowledge
from stacks.lane_env import code_files

LAMBDA_SRC = Path(__file__).resolve().parents[2] / "lambda_src"
RUNTIME = lambda_.Runtime.PYTHON_3_13
PYTHON_VERSION = "3.13"  # the pip target of the bundle; must match RUNTIME (and `make lock`'s for the Lambda)
LAMBDA_REQUIREMENTS = LAMBDA_SRC / "requirements.lock"
SOURCE_EXCLUDE = NOT_COPIED_ANYWHERE  # what the bundle leaves out, as the asset hash leaves it out


def source_code(lanes: Lanes) -> lambda_.AssetCode:
    """``lambda_src``'s packages + pip-installed ``lambda_src/requirements.lock`` (the pins of
    ``requirements.txt`` resolved for Python 3.13 on arm64, with hashes: ``make lock``), bundled locally, with
    ``lanes``' document generated into it (``lane_env.LANES_FILE``, which the functions' ``LANES_FILE`` names):
    the lanes ride in the code, not in the 4 KB environment, and a change to them is a new asset.

    One instance serves every function of a stack (CDK stages and uploads it once); a second stack
    needs its own.
    """
    bundling = lambda_bundling(generated=code_files(lanes))
    return lambda_.Code.from_asset(
        str(LAMBDA_SRC),
        exclude=list(SOURCE_EXCLUDE),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=asset_hash(bundling),
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,  # never used: local bundling either succeeds or raises
            local=bundling,
        ),
    )


def asset_hash(bundling: PipLocalBundling) -> str:
    """The sources' fingerprint with the bundling recipe (:meth:`PipLocalBundling.recipe`), not pip's output: a
    synth that changes nothing changes nothing. The lock sits in lambda_src, so the sources cover every resolved
    dependency and its wheel hashes; the recipe covers the platform and the Python they are installed for (CDK's
    own source hash sees neither: its bundling options hold the local bundler only as an object reference)."""
    return FileSystem.fingerprint(str(bundling.source_dir), exclude=list(SOURCE_EXCLUDE), extra_hash=bundling.recipe())


def lambda_bundling(generated: Mapping[str, str] | None = None) -> PipLocalBundling:
    """The local bundler of :func:`source_code`: ``requirements.lock``, hashes required, for the runtime's Python,
    and the ``generated`` files."""
    return PipLocalBundling(source_dir=LAMBDA_SRC, requirements=LAMBDA_REQUIREMENTS, python_version=PYTHON_VERSION,
                            generated=generated)


@dataclass(frozen=True)
class PythonFunction:
    function: lambda_.Function
    role: iam.Role
    log_group: logs.LogGroup


def python_function(
    scope: Construct, *, code: lambda_.Code, handler: str, description: str, role_description: str,
    environment: Mapping[str, str], memory_mb: int, timeout: Duration, log_retention: logs.RetentionDays,
    reserved_concurrency: int | None = None, retry_attempts: int | None = None, snap_start: bool = False,
) -> PythonFunction:
    """Creates, in ``scope``, ``LogGroup`` (``log_retention``, destroyed with the stack), ``Role`` (its own,
    no AWS-managed policy; it may write that log group and nothing else yet) and ``Function`` (arm64,
    Python 3.13, JSON logs to that group; ``snap_start``: SnapStart on published versions). The caller grants the
    rest to ``role``."""
    log_group = logs.LogGroup(scope, "LogGroup", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
    role = iam.Role(scope, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=role_description)
    function = lambda_.Function(
        scope, "Function",
        runtime=RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=code,
        memory_size=memory_mb,
        timeout=timeout,
        reserved_concurrent_executions=reserved_concurrency,
        retry_attempts=retry_attempts,
        environment=dict(environment),
        role=role,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        description=description,
        snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
    )
    log_group.grant_write(role)
    acknowledge(function, "AwsSolutions-L1",
                f"Pinned to {RUNTIME.name}: the bundle's wheels are built for it (pip --python-version "
                f"{PYTHON_VERSION}) and the worker image runs the same Python; both move together.")
    return PythonFunction(function, role, log_group)
