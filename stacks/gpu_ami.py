"""Where the GPU lane can deploy: its instance type and its AMI release, checked at synth against the deploy region.

``gpu_instance_type`` must be offered in the region: ``gpu_instance_regions.json`` lists the regions of each GPU
instance type, generated from cfn-lint's regional data by ``python -m tools.gpu_regions`` (a test keeps it equal
to what the pinned cfn-lint says). A type the region lacks would deploy an Auto Scaling group that never launches.

``gpu_ami_release`` names a release of the ECS-optimized Amazon Linux 2023 GPU AMI, read at deploy from
the public SSM parameter ``/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/<release>/image_id``. AWS
publishes each release in some regions only, and a release missing from the deploy region fails the
deploy deep inside CloudFormation (an unresolvable parameter). ``gpu_ami_releases.json`` lists the known
releases and their regions, so synth can say so first, with what to do instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.config import ConfigError

RELEASES_FILE = Path(__file__).resolve().with_name("gpu_ami_releases.json")
INSTANCE_REGIONS_FILE = Path(__file__).resolve().with_name("gpu_instance_regions.json")
PARAMETER_PATH = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu"
_SHOWN = "stacks/gpu_ami_releases.json"


class GpuAmiReleaseError(ConfigError):
    """The configured release is not known to be published in the deploy region; the message says what to do."""


def list_command(region: str) -> str:
    return (f"aws ssm get-parameters-by-path --path {PARAMETER_PATH} --region {region} "
            "--query 'Parameters[].Name' --output text")


@dataclass(frozen=True)
class GpuAmiReleases:
    """``releases``: release name -> the regions it is published in. ``last_checked``: when the list was."""

    releases: Mapping[str, frozenset[str]]
    last_checked: str

    @classmethod
    def load(cls, path: Path = RELEASES_FILE) -> GpuAmiReleases:
        data, releases = _load_by_region(path, "releases")
        return cls(releases=releases, last_checked=str(data["last_checked"]))

    def in_region(self, region: str) -> list[str]:
        """The listed releases published in ``region``, newest first."""
        return sorted((release for release, regions in self.releases.items() if region in regions), reverse=True)

    def check(self, release: str, region: str) -> None:
        """Returns if ``release`` is listed for ``region``; raises :class:`GpuAmiReleaseError` otherwise."""
        regions = self.releases.get(release)
        if regions is not None and region in regions:
            return
        available = self.in_region(region)
        pick = (f"releases listed for {region}: {', '.join(available)}; deploy with -c gpu_ami_release=<one of them>"
                if available else f"{_SHOWN} lists no release for {region}")
        how = (f"List the releases AWS publishes in {region} with `{list_command(region)}` and deploy with "
               f"-c gpu_ami_release=<release> (or set it in cdk.json); add a release or a region you checked to "
               f"{_SHOWN} (last checked {self.last_checked}).")
        if regions is None:
            raise GpuAmiReleaseError(
                f"context key 'gpu_ami_release' = {release!r}: not a release listed in {_SHOWN}, so synth cannot "
                f"tell whether {region} has it ({pick}). {how}")
        raise GpuAmiReleaseError(
            f"context key 'gpu_ami_release' = {release!r}: not published in {region} as far as {_SHOWN} knows "
            f"(listed for {', '.join(sorted(regions))}); {pick}. {how}")


class GpuInstanceRegionError(ConfigError):
    """The configured instance type is not offered in the deploy region; the message names the ones that are."""


@dataclass(frozen=True)
class GpuInstanceRegions:
    """``regions``: GPU instance type -> the regions it is offered in; ``source``: where that was read."""

    regions: Mapping[str, frozenset[str]]
    source: str

    @classmethod
    def load(cls, path: Path = INSTANCE_REGIONS_FILE) -> GpuInstanceRegions:
        data, regions = _load_by_region(path, "instance_types")
        return cls(regions=regions, source=str(data["source"]))

    def in_region(self, region: str) -> list[str]:
        return sorted(name for name, regions in self.regions.items() if region in regions)

    def check(self, instance_type: str, region: str) -> None:
        """Returns if ``instance_type`` is offered in ``region``; raises :class:`GpuInstanceRegionError` otherwise."""
        if region in self.regions.get(instance_type, ()):
            return
        offered = self.in_region(region)
        pick = (f"GPU types offered in {region}: {', '.join(offered)}" if offered
                else f"no GPU instance type is offered in {region}")
        raise GpuInstanceRegionError(
            f"context key 'gpu_instance_type' = {instance_type!r}: not offered in {region} ({pick}; "
            f"stacks/gpu_instance_regions.json, from {self.source})")


def _load_by_region(path: Path, key: str) -> tuple[dict[str, Any], dict[str, frozenset[str]]]:
    """A data file of this folder, and its ``key``: name -> the regions it is in."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return data, {name: frozenset(regions) for name, regions in data[key].items()}
