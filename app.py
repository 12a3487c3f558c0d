#!/usr/bin/env python3
"""The CDK app: read the configuration once, add the stacks, check them with cdk-nag, synthesize."""

import os
import sys
from pathlib import Path

# The constructs import the runtime's shared names (table keys, env var names) from lambda_src.
sys.path.insert(0, str(Path(__file__).resolve().parent / "lambda_src"))

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from stacks.config import ConfigError, PipelineConfig  # noqa: E402
from stacks.pipeline import add_pipeline  # noqa: E402

app = cdk.App()
try:
    config = PipelineConfig.from_app(app)
    # The stacks are environment-agnostic: `cdk deploy` sends them to the CLI's region, which it passes
    # as CDK_DEFAULT_REGION (checks that depend on the region, like the GPU AMI release, use it).
    add_pipeline(app, config, default_region=os.environ.get("CDK_DEFAULT_REGION") or None)
except ConfigError as error:
    sys.exit(f"configuration error: {error}")
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
