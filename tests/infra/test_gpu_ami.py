"""Where the GPU lane can deploy, checked at synth against the deploy region: its AMI release
(stacks/gpu_ami_releases.json) and its instance type (stacks/gpu_instance_regions.json, from cfn-lint's data)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match
from infra_support import CDK_JSON, GPU_REGION, REPO, synth

from stacks.config import _GPU_AMI_RELEASE, GPU_INSTANCE_TYPE, PipelineConfig
from stacks.constructs.compute import GPU_AMI_PARAMETER
from stacks.gpu_ami import (
    INSTANCE_REGIONS_FILE,
    PARAMETER_PATH,
    RELEASES_FILE,
    GpuAmiReleaseError,
    GpuAmiReleases,
    GpuInstanceRegionError,
    GpuInstanceRegions,
)
from tools import gpu_regions

DEFAULT_RELEASE = PipelineConfig().gpu_ami_release
UNKNOWN_RELEASE = "al2023-ami-ecs-gpu-hvm-2023.0.20200101-kernel-6.1-x86_64-ebs"
DEFAULT_INSTANCE = PipelineConfig().gpu_instance_type
UNLISTED_REGION = "il-central-1"  # a commercial region that offers g5.xlarge but the releases file does not (yet) list
NO_G5_REGION = "us-west-1"  # a region that does not offer g5.xlarge (cfn-lint's regional data)


def test_the_data_file_lists_releases_with_their_regions_and_says_how_to_refresh_it():
    data = json.loads(RELEASES_FILE.read_text())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["last_checked"])
    assert f"aws ssm get-parameters-by-path --path {PARAMETER_PATH} --region" in data["refresh"]
    assert GPU_AMI_PARAMETER.startswith(PARAMETER_PATH + "/")
    for release, regions in data["releases"].items():
        assert _GPU_AMI_RELEASE.fullmatch(release), release
        assert regions == sorted(set(regions)) and regions
        assert all(re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region) for region in regions), regions
    # cdk.json's release is one synth can check: listed for the region it was verified in, and only that.
    assert data["releases"][CDK_JSON["context"]["gpu_ami_release"]] == [GPU_REGION]


def test_every_region_listed_for_a_release_offers_the_default_instance_type():
    # The check that would have caught the old list: 6 of its 21 regions do not offer g5.xlarge.
    offered = GpuInstanceRegions.load().regions[DEFAULT_INSTANCE]
    for release, regions in GpuAmiReleases.load().releases.items():
        assert regions <= offered, (release, sorted(regions - offered))


class TestInstanceRegions:
    regions = GpuInstanceRegions.load()

    def test_the_data_file_is_what_the_pinned_cfn_lint_says(self):
        assert INSTANCE_REGIONS_FILE.read_text() == gpu_regions.render(gpu_regions.build()), (
            "stacks/gpu_instance_regions.json is stale: run python -m tools.gpu_regions")
        pin = next(line for line in (REPO / "requirements-dev.txt").read_text().splitlines() if line.startswith("cfn-lint=="))
        assert self.regions.source.startswith(f"cfn-lint {pin.split('==')[1]}, ")

    def test_the_tool_reads_cfn_lint_once_a_run(self, tmp_path, monkeypatch, capsys):
        calls = []
        data = {"about": "", "instance_types": {"g5.xlarge": ["us-east-1"]}}
        monkeypatch.setattr(gpu_regions, "build", lambda: calls.append(1) or data)
        out = tmp_path / "stacks" / "gpu_instance_regions.json"
        out.parent.mkdir()
        monkeypatch.setattr(gpu_regions, "INSTANCE_REGIONS_FILE", out)
        monkeypatch.setattr(gpu_regions, "ROOT", tmp_path)
        assert gpu_regions.main([]) == 0
        assert out.read_text() == gpu_regions.render(data) and len(calls) == 1
        assert "1 instance types" in capsys.readouterr().out

    def test_it_covers_the_instance_types_the_config_admits(self):
        assert DEFAULT_INSTANCE in self.regions.regions
        assert all(GPU_INSTANCE_TYPE.fullmatch(name) for name in self.regions.regions)
        assert {"g5.xlarge", "g5.2xlarge", "g6.xlarge"} <= set(self.regions.regions)  # every GPU type prices.json lists

    def test_g5_xlarge_is_absent_where_cfn_lint_says_so(self):
        absent = {"af-south-1", "ap-northeast-3", "ap-southeast-1", "eu-south-1", "me-south-1", "us-west-1"}
        assert not absent & self.regions.regions["g5.xlarge"]
        assert {"us-east-1", "us-west-2", "eu-west-1", GPU_REGION} <= self.regions.regions["g5.xlarge"]

    def test_a_type_the_region_lacks_fails_naming_the_ones_it_offers(self):
        assert self.regions.check("g5.xlarge", "us-east-1") is None
        with pytest.raises(GpuInstanceRegionError) as raised:
            self.regions.check("g5.xlarge", NO_G5_REGION)
        message = str(raised.value)
        assert message.startswith(f"context key 'gpu_instance_type' = 'g5.xlarge': not offered in {NO_G5_REGION} (GPU types "
                                  f"offered in {NO_G5_REGION}: g4dn.")
        assert "cfn-lint" in message
        with pytest.raises(GpuInstanceRegionError, match="no GPU instance type is offered in xx-nowhere-1"):
            self.regions.check("g5.xlarge", "xx-nowhere-1")


class TestCheck:
    releases = GpuAmiReleases.load()

    def test_a_release_listed_for_the_region_passes(self):
        assert self.releases.check(DEFAULT_RELEASE, GPU_REGION) is None
        assert self.releases.in_region(GPU_REGION) == [DEFAULT_RELEASE]

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
            self.releases.check(UNKNOWN_RELEASE, GPU_REGION)
        message = str(raised.value)
        assert f"{UNKNOWN_RELEASE!r}: not a release listed in stacks/gpu_ami_releases.json" in message
        assert f"releases listed for {GPU_REGION}: {DEFAULT_RELEASE}" in message
        assert f"--region {GPU_REGION}" in message and "-c gpu_ami_release=" in message


class TestSynth:
    def test_a_listed_release_synthesizes_in_the_cli_region_and_in_an_explicit_one(self, gpu_app):
        assert gpu_app.config.gpu_ami_release == DEFAULT_RELEASE  # gpu_app: the CLI's default region, GPU_REGION
        app = synth(gpu_enabled="true", default_region=None, env=cdk.Environment(region=GPU_REGION))
        assert app.service.region == GPU_REGION
        assert Annotations.from_stack(app.service).find_warning("*", Match.string_like_regexp("gpu_ami_release")) == []

    def test_an_unlisted_region_fails_synth(self):
        with pytest.raises(GpuAmiReleaseError, match=f"not published in {UNLISTED_REGION}"):
            synth(gpu_enabled="true", default_region=UNLISTED_REGION)
        # The stack's own region wins over the CLI's default.
        with pytest.raises(GpuAmiReleaseError, match=f"not published in {UNLISTED_REGION}"):
            synth(gpu_enabled="true", default_region=GPU_REGION, env=cdk.Environment(region=UNLISTED_REGION))

    def test_an_unknown_release_fails_synth(self):
        with pytest.raises(GpuAmiReleaseError, match="not a release listed"):
            synth(gpu_enabled="true", gpu_ami_release=UNKNOWN_RELEASE, default_region=GPU_REGION)

    def test_an_instance_type_the_region_does_not_offer_fails_synth(self):
        with pytest.raises(GpuInstanceRegionError, match=f"'gpu_instance_type' = 'g5.xlarge': not offered in {NO_G5_REGION}"):
            synth(gpu_enabled="true", default_region=NO_G5_REGION)
        with pytest.raises(GpuInstanceRegionError, match="not offered in ap-northeast-3"):
            synth(gpu_enabled="true", default_region=None, env=cdk.Environment(region="ap-northeast-3"))

    def test_without_the_gpu_lane_nothing_is_checked(self):
        synth(gpu_ami_release=UNKNOWN_RELEASE, default_region=UNLISTED_REGION)

    def test_two_ec2_lanes_read_each_file_once_and_check_each_instance_type(self, monkeypatch):
        from stacks import service_stack

        loads: list[str] = []
        for cls in (GpuInstanceRegions, GpuAmiReleases):
            real = cls.load
            monkeypatch.setattr(service_stack, cls.__name__, type(cls.__name__, (), {
                "load": staticmethod(lambda real=real, name=cls.__name__: loads.append(name) or real())}))
        big = {"name": "gpu-big", "gpu": True, "memory_mb": 14336, "time_limit_s": 900, "task_cpu": 2048,
               "compute": {"kind": "ec2", "instance": "g5.2xlarge"}}
        synth(gpu_enabled="true", lanes=[big], default_region=GPU_REGION)
        assert sorted(loads) == ["GpuAmiReleases", "GpuInstanceRegions"]
        # Every lane's instance type is checked, not only the first's (eu-west-1 offers g5 but not g6).
        with pytest.raises(GpuInstanceRegionError, match="'g6.xlarge': not offered in eu-west-1"):
            synth(gpu_enabled="true", lanes=[{**big, "compute": {"kind": "ec2", "instance": "g6.xlarge"}}],
                  default_region="eu-west-1")

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
