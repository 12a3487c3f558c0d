"""``jobpipe configure``: the API URL and key from a deployed service stack (CloudFormation outputs and API
Gateway, on moto), the config file it writes, and the order settings are read in (environment first)."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from jobpipe import Client, ConfigurationError
from jobpipe import cli as jobpipe_cli
from jobpipe.config import config_path, resolve

REGION = "eu-west-1"
STACK = "JobPipeline-dev-Service"
API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/dev/"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A clean environment: no JOBPIPE_ variables, the config under tmp_path, fake AWS credentials."""
    for name in [name for name in os.environ if name.startswith(("JOBPIPE_", "AWS_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return tmp_path / "xdg" / "jobpipe" / "config.json"


@pytest.fixture
def aws(home) -> Iterator[dict[str, str]]:
    """A deployed service stack on moto: an API key, and a stack whose outputs name it (as the real one's do)."""
    with mock_aws():
        key = boto3.client("apigateway", region_name=REGION).create_api_key(name="jobs-dev", enabled=True)
        template = {
            "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {"ApiUrl": {"Value": API_URL}, "ApiKeyId": {"Value": key["id"]},
                        "WebhookQueueUrl": {"Value": "https://sqs.example/queue"}},
        }
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
        data = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"TableName": {"Value": "jobs"}}}
        cloudformation.create_stack(StackName="JobPipeline-dev-Data", TemplateBody=json.dumps(data))
        yield {"key_id": key["id"], "key": key["value"]}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = jobpipe_cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_configure_reads_the_stack_and_the_key_and_saves_them_for_the_owner_only(aws, home):
    code, out, err = run("configure", "--stack", STACK, "--region", REGION)
    assert code == jobpipe_cli.OK, err
    assert str(home) in out and "next: jobpipe tasks" in err
    saved = json.loads(home.read_text())
    assert saved["api_url"] == API_URL and saved["api_key"] == aws["key"] and saved["api_key_id"] == aws["key_id"]
    assert saved["stack"] == STACK and saved["region"] == REGION
    assert stat.S_IMODE(home.stat().st_mode) == 0o600

    client = Client()  # no arguments, no environment: the file
    assert client.base_url == API_URL
    shown = run("configure", "--show", "--json")
    assert json.loads(shown[1])["api_key"] != aws["key"] and aws["key"] not in shown[1]  # masked


def test_the_environment_overrides_the_file(aws, home, monkeypatch):
    assert run("configure", "--stack", STACK, "--region", REGION)[0] == jobpipe_cli.OK
    monkeypatch.setenv("JOBPIPE_API_URL", "http://127.0.0.1:8080")
    settings = resolve()
    assert settings.api_url == "http://127.0.0.1:8080" and settings.api_key == aws["key"]  # the key still from the file
    monkeypatch.setenv("JOBPIPE_API_KEY", "local-dev-key")
    assert resolve().api_key == "local-dev-key" and resolve().source == "environment"
    assert resolve("http://other", "k").api_url == "http://other"


def test_configure_again_replaces_the_file_and_keeps_it_private(aws, home):
    home.parent.mkdir(parents=True)
    home.write_text('{"api_url": "http://old", "api_key": "old"}')
    home.chmod(0o644)
    assert run("configure", "--stack", STACK, "--region", REGION)[0] == jobpipe_cli.OK
    assert json.loads(home.read_text())["api_url"] == API_URL and stat.S_IMODE(home.stat().st_mode) == 0o600


@pytest.mark.parametrize("stack, reason", [
    ("JobPipeline-prod-Service", "cannot read stack 'JobPipeline-prod-Service'"),
    ("JobPipeline-dev-Data", "has no ApiUrl or ApiKeyId output"),
])
def test_a_stack_that_is_not_a_service_stack_is_a_clear_error(aws, home, stack, reason):
    code, _, err = run("configure", "--stack", stack, "--region", REGION)
    assert code == jobpipe_cli.USAGE and reason in err
    assert not home.exists()


def test_configure_needs_a_region(aws, home, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home.parent / "no-aws-config"))
    code, _, err = run("configure", "--stack", STACK)
    assert code == jobpipe_cli.USAGE and "no AWS region" in err


def test_configure_by_hand_and_without_anything(home):
    assert run("configure", "--api-url", "http://127.0.0.1:8080", "--api-key", "local-dev-key")[0] == jobpipe_cli.OK
    assert resolve().api_key == "local-dev-key" and resolve().source == str(config_path())
    code, _, err = run("configure")
    assert code == jobpipe_cli.USAGE and "--stack" in err


def test_without_any_setting_the_client_says_what_to_set(home):
    with pytest.raises(ConfigurationError, match="JOBPIPE_API_URL and JOBPIPE_API_KEY"):
        Client()
    home.parent.mkdir(parents=True)
    home.write_text("not json")
    with pytest.raises(ConfigurationError, match="cannot read the config file"):
        Client()
