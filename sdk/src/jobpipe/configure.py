"""``jobpipe configure --stack <service stack>``: the API's URL and key from a deployed stack.

The service stack's outputs name the API (``ApiUrl``) and its key (``ApiKeyId``); API Gateway gives the
key's value (``get_api_key(includeValue=True)``). boto3 is needed here only (``pip install 'jobpipe[aws]'``),
with the usual AWS credentials, profile and region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobpipe.config import ConfigurationError

URL_OUTPUT = "ApiUrl"
KEY_OUTPUT = "ApiKeyId"


@dataclass(frozen=True)
class Deployed:
    api_url: str
    api_key_id: str
    api_key: str
    stack: str
    region: str | None


def from_stack(stack: str, *, region: str | None = None, profile: str | None = None, session: Any = None) -> Deployed:
    """The API URL and key of the service stack ``stack`` (``JobPipeline-<stage>-Service``)."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError:  # the SDK itself needs no AWS library
        raise ConfigurationError("`jobpipe configure --stack` needs boto3: pip install 'jobpipe[aws]'") from None
    try:
        session = session or boto3.Session(profile_name=profile, region_name=region)
        outputs = _outputs(session.client("cloudformation"), stack)
        missing = [name for name in (URL_OUTPUT, KEY_OUTPUT) if not outputs.get(name)]
        if missing:
            raise ConfigurationError(
                f"stack {stack!r} has no {' or '.join(missing)} output: name the service stack "
                "(JobPipeline-<stage>-Service), not the data stack")
        key_id = outputs[KEY_OUTPUT]
        try:
            key = session.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)
        except botocore.exceptions.ClientError as error:
            raise ConfigurationError(f"cannot read API key {key_id} from API Gateway: {_message(error)}") from None
        if not key.get("value"):
            raise ConfigurationError(f"API Gateway returned no value for API key {key_id}")
        return Deployed(api_url=outputs[URL_OUTPUT], api_key_id=key_id, api_key=key["value"], stack=stack,
                        region=session.region_name)
    except botocore.exceptions.NoRegionError:
        raise ConfigurationError("no AWS region: pass --region, or set AWS_REGION (or the profile's region)") from None
    except botocore.exceptions.NoCredentialsError:
        raise ConfigurationError("no AWS credentials: configure them (aws configure, AWS_PROFILE, --profile)") from None
    except botocore.exceptions.ProfileNotFound as error:
        raise ConfigurationError(str(error)) from None
    except botocore.exceptions.BotoCoreError as error:  # endpoint unreachable and the like
        raise ConfigurationError(f"AWS: {error}") from None


def _outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    import botocore.exceptions

    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except botocore.exceptions.ClientError as error:
        raise ConfigurationError(f"cannot read stack {stack!r}: {_message(error)} (is the region right?)") from None
    if not stacks:
        raise ConfigurationError(f"no stack {stack!r}")
    return {entry["OutputKey"]: entry["OutputValue"] for entry in stacks[0].get("Outputs") or []}


def _message(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Message") or error)
