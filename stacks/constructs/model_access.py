"""What a role needs to call the deployment's model providers: the Anthropic key's secret (only with Anthropic
among them) and ``bedrock:InvokeModel`` on exactly the inference profiles used and the foundation models they
route to (a geographic profile's: the model in each of its destination Regions; a global profile's: the
Region-less foundation-model ARN, which is how AWS grants its any-commercial-Region routing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager

from jobcore.pricing import BedrockProfile
from jobcore.providers import ANTHROPIC, DEFAULT_BEDROCK_SCOPE, DEFAULT_PROVIDERS
from stacks.lane_env import providers_value


@dataclass(frozen=True)
class ModelAccess:
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    bedrock_scope: str = DEFAULT_BEDROCK_SCOPE
    profiles: tuple[BedrockProfile, ...] = ()

    @property
    def anthropic(self) -> bool:
        return ANTHROPIC in self.providers

    def environment(self) -> dict[str, str]:
        """``MODEL_PROVIDERS`` (ClaudeSettings); ``BEDROCK_PROFILE`` is the lanes' (stacks.lane_env)."""
        return {"MODEL_PROVIDERS": providers_value(self.providers)}

    def invoke_resources(self) -> list[str]:
        resources: list[str] = []
        for profile in self.profiles:
            resources.append(f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:inference-profile/{profile.id}")
            if profile.destinations is None:
                resources.append(f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}::foundation-model/{profile.model}")
                resources.append(f"arn:{Aws.PARTITION}:bedrock:::foundation-model/{profile.model}")
            else:
                resources.extend(f"arn:{Aws.PARTITION}:bedrock:{region}::foundation-model/{profile.model}"
                                 for region in profile.destinations)
        return list(dict.fromkeys(resources))

    def grant(self, role: iam.IRole, anthropic_secret: secretsmanager.ISecret | None) -> None:
        """The role's grants: the secret (the Lambda reads it itself; pass None where ECS injects it), InvokeModel."""
        if self.anthropic and anthropic_secret is not None:
            anthropic_secret.grant_read(role)
        resources = self.invoke_resources()
        if resources:
            role.add_to_principal_policy(iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=resources))


def model_access(providers: Sequence[str], bedrock_scope: str, profiles: Sequence[BedrockProfile]) -> ModelAccess:
    return ModelAccess(tuple(providers), bedrock_scope, tuple(profiles))


ANTHROPIC_ONLY = ModelAccess()  # the default deployment's
