"""The GPU AMI release, checked at synth against the deploy region (stacks/gpu_ami_releases.json)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match
from infra_support import CDK_JSON, REPO, synth

from stacks.config import _GPU_AMI_RELEASE, PipelineConfig
from stacks.constructs.compute import GPU_AMI_PARAMETER
from stacks.gpu_ami import PARAMETER_PATH, RELEASES_FILE, GpuAmiReleaseError, GpuAmiReleases

DEFAULT_RELEASE = PipelineConfig().gpu_ami_release
UNKNOWN_RELEASE = "al2023-ami-ecs-gpu-hvm-2023.0.20200101-kernel-6.1-x86_64-ebs"
UNLISTED_REGION = "il-central-1"  # a commercial region the file does not (yet) list


def test_the_data_file_lists_releases_with_their_regions_and_says_how_to_refresh_it():
    data = json.loads(RELEASES_FILE.read_text())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["last_checked"])
    assert f"aws ssm get-parameters-by-path --path {PARAMETER_PATH} --region" in data["refresh"]
    assert GPU_AMI_PARAMETER.startswith(PARAMETER_PATH + "/")
    for release, regions in data["releases"].items():
        assert _GPU_AMI_RELEASE.fullmatch(release), release
        assert regions == sorted(set(regions)) and regions
        assert all(re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region) for region in regions), regions
    # cdk.json's release is one synth can check, in the regions most deployments use.
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= set(data["releases"][CDK_JSON["context"]["gpu_ami_release"]])


class TestCheck:
    releases = GpuAmiReleases.load()

    def test_a_release_listed_for_the_region_passes(self):
        assert self.releases.check(DEFAULT_RELEASE, "eu-west-1") is None
        assert self.releases.in_region("eu-west-1") == [DEFAULT_RELEASE]

    def test_a_release_not_published_in_the_region_fails_saying_how_to_pick_one(self):
        with pytest.raises(GpuAmiReleaseError) as raised:
            self.releases.check(DEFAULT_RELEASE, UNLISTED_REGION)
        message = str(raised.value)
        assert message.startswith(f"context key 'gpu_ami_release' = {DEFAULT_RELEASE!r}: not published in {UNLISTED_REGION}")
        assert f"aws ssm get-parameters-by-path --path {PARAMETER_PATH} --region {UNLISTED_REGION}" in message
        assert "-c gpu_ami_release=<release>" in message
        assert "stacks/gpu_ami_releases.json" in message  # ... or add the region there

    def test_an_unknown_release_fails_naming_the_releases_of_the_region(self):
        with pytest.raises(GpuAmiReleaseError) as raised:
            self.releases.check(UNKNOWN_RELEASE, "us-east-1")
        message = str(raised.value)
        assert f"{UNKNOWN_RELEASE!r}: not a release listed in stacks/gpu_ami_releases.json" in message
        assert f"releases listed for us-east-1: {DEFAULT_RELEASE}" in message
        assert "--region us-east-1" in message and "-c gpu_ami_release=" in message


class TestSynth:
    def test_a_listed_release_synthesizes_in_the_cli_region_and_in_an_explicit_one(self, gpu_app):
        assert gpu_app.config.gpu_ami_release == DEFAULT_RELEASE  # gpu_app: the CLI's default region, us-east-1
        app = synth(gpu_enabled="true", default_region=None, env=cdk.Environment(region="eu-west-2"))
        assert app.service.region == "eu-west-2"
        assert Annotations.from_stack(app.service).find_warning("*", Match.string_like_regexp("gpu_ami_release")) == []

    def test_an_unlisted_region_fails_synth(self):
        with pytest.raises(GpuAmiReleaseError, match=f"not published in {UNLISTED_REGION}"):
            synth(gpu_enabled="true", default_region=UNLISTED_REGION)
        # The stack's own region wins over the CLI's default.
        with pytest.raises(GpuAmiReleaseError, match=f"not published in {UNLISTED_REGION}"):
            synth(gpu_enabled="true", default_region="us-east-1", env=cdk.Environment(region=UNLISTED_REGION))

    def test_an_unknown_release_fails_synth(self):
        with pytest.raises(GpuAmiReleaseError, match="not a release listed"):
            synth(gpu_enabled="true", gpu_ami_release=UNKNOWN_RELEASE)

    def test_without_the_gpu_lane_nothing_is_checked(self):
        synth(gpu_ami_release=UNKNOWN_RELEASE, default_region=UNLISTED_REGION)

    def test_an_environment_agnostic_synth_without_a_region_warns_that_it_did_not_check(self):
        app = synth(gpu_enabled="true", default_region=None)
        (warning,) = Annotations.from_stack(app.service).find_warning("*", Match.string_like_regexp("gpu_ami_release"))
        assert "not checked against a region" in warning.entry.data


def test_app_py_stops_on_a_release_the_cli_region_lacks():
    # GIVEN `cdk synth -c gpu_enabled=true` run by the CLI for a region the release is not listed in
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({**CDK_JSON["context"], "gpu_enabled": "true",
                                                         "aws:cdk:bundling-stacks": []}),
           "CDK_DEFAULT_REGION": UNLISTED_REGION, "CDK_OUTDIR": "/nonexistent-never-written"}
    # WHEN the app runs THEN it stops before synthesizing, saying which key and what to do
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode != 0
    assert f"configuration error: context key 'gpu_ami_release' = {DEFAULT_RELEASE!r}: not published in" in result.stderr
