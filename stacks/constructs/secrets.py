"""The two secrets the pipeline needs: the Anthropic API key and the webhook signing secret."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.constructs.nag import acknowledge


class PipelineSecrets(Construct):
    """Creates:
      ``anthropic_api_key``: a random placeholder until the user puts the real key in (see docs/deploy.md, "Give it your Claude key");
        the placeholder lets worker tasks start, ECS cannot inject a secret that has no value.
      ``webhook_signing_secret``: 64 random base64-alphabet characters, the Standard Webhooks key
        (``standardwebhooks`` accepts it with or without the ``whsec_`` prefix). Only the webhook
        dispatcher reads it: the router and the workers hand webhooks over, they never sign them.
    Both use the account's ``aws/secretsmanager`` key. Deleting the stack schedules them for deletion
    (recoverable for 30 days), since a redeploy generates new ones.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.anthropic_api_key = secretsmanager.Secret(
            self, "AnthropicApiKey",
            description="Anthropic API key for Claude, read by the router Lambda and the workers. "
                        "Replace the generated placeholder: aws secretsmanager put-secret-value.",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=32),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.webhook_signing_secret = secretsmanager.Secret(
            self, "WebhookSigningSecret",
            description="Standard Webhooks signing secret (base64) for outbound job webhooks.",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, include_space=False, password_length=64),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(self.anthropic_api_key, "AwsSolutions-SMG4",
                    "Anthropic issues this key in its console; Secrets Manager cannot mint a new one, so rotation "
                    "is a manual put-secret-value (documented), picked up by the Lambda cache and new tasks.")
        acknowledge(self.webhook_signing_secret, "AwsSolutions-SMG4",
                    "Receivers verify signatures with this secret; an automatic rotation would break every receiver "
                    "at once. Rotation is a planned manual step announced to webhook receivers.")
