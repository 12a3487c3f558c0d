"""Writes ``stacks/gpu_instance_regions.json``: the regions each GPU instance type the config admits is offered in.

    python -m tools.gpu_regions            # rewrite the file from the installed cfn-lint
    python -m tools.gpu_regions --check    # exit 1 if the file differs (a test runs the same comparison)

The source is cfn-lint's own regional data (the pinned ``cfn-lint`` of requirements-dev.txt): the instance types
its schema for ``AWS::EC2::Instance`` allows in each region, which cfn-lint updates from AWS's price list ("update_specs_from_pricing").
cfn-lint is a development tool, so synth reads the generated file, not cfn-lint: bump the pin, run this, commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "lambda_src") not in sys.path:  # `python -m tools.gpu_regions` from a bare checkout
    sys.path.insert(0, str(ROOT / "lambda_src"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stacks.config import GPU_INSTANCE_TYPE
from stacks.gpu_ami import INSTANCE_REGIONS_FILE

CFN_LINT_DATA = "data/schemas/extensions/aws_ec2_instance/instancetype_enum.json"


def cfn_lint_instance_types() -> dict[str, list[str]]:
    """Region -> the EC2 instance types cfn-lint allows there (its key ``all``, the union, is left out)."""
    data = json.loads(resources.files("cfnlint").joinpath(CFN_LINT_DATA).read_text(encoding="utf-8"))
    return {region: entry["enum"] for region, entry in data.items() if isinstance(entry, dict) and region != "all"}


def build() -> dict[str, Any]:
    by_region = cfn_lint_instance_types()
    types = sorted({t for types in by_region.values() for t in types if GPU_INSTANCE_TYPE.fullmatch(t)})
    return {
        "about": "The regions each GPU instance type that gpu_instance_type admits is offered in. cdk synth refuses a "
                 "gpu_instance_type the deploy region does not offer (stacks/gpu_ami.py), when gpu_enabled is true.",
        "source": f"cfn-lint {version('cfn-lint')}, cfnlint/{CFN_LINT_DATA} (AWS::EC2::Instance InstanceType by region)",
        "generated_by": "python -m tools.gpu_regions (do not edit by hand)",
        "instance_types": {t: sorted(region for region, offered in by_region.items() if t in offered) for t in types},
    }


def render(data: dict[str, Any]) -> str:
    """JSON with one line per instance type (its regions), so a cfn-lint bump diffs by type."""
    head = {key: value for key, value in data.items() if key != "instance_types"}
    lines = [json.dumps(head, indent=2)[:-2] + ",", '  "instance_types": {']
    rows = [f"    {json.dumps(name)}: {json.dumps(regions)}" for name, regions in data["instance_types"].items()]
    lines.append(",\n".join(rows))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    data = build()
    text = render(data)
    if args.check:
        same = INSTANCE_REGIONS_FILE.read_text(encoding="utf-8") == text
        print(f"{INSTANCE_REGIONS_FILE.name}: {'up to date' if same else 'differs: run python -m tools.gpu_regions'}")
        return 0 if same else 1
    INSTANCE_REGIONS_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {INSTANCE_REGIONS_FILE.relative_to(ROOT)}: {len(data['instance_types'])} instance types")
    return 0


if __name__ == "__main__":
    sys.exit(main())
