"""Is every AWS call allowed by the role that makes it? An IAM policy evaluator over synthesized CloudFormation.

moto enforces no IAM, so a call the code makes and its role does not allow passes every local test and fails in
AWS (AccessDenied). The permission test (tests/e2e/test_permissions.py) records the calls each component of the
local pipeline makes (``local.aws_calls.CallRecorder``) and checks them here against the policies of that
component's role in the synthesized templates:

* :class:`Templates`: the stacks' templates with intrinsics resolved (``Ref``, ``Fn::GetAtt``, ``Fn::Join``,
  ``Fn::Sub``, ``Fn::Select``, ``Fn::Split``, ``Fn::GetStackOutput``, ``Fn::ImportValue``) to the resources
  created: a resource's physical name is ``names[logical id]`` (the local runtime's, for the resources it made)
  or else its logical id, and its ARN follows its type. :meth:`Templates.role` gathers a role's statements: its
  inline policies, the ``AWS::IAM::Policy`` resources attached to it, the customer managed policies it names.
* :func:`requests_for`: what IAM authorizes an API call as: ``(action, resource ARN, condition keys)``, one or
  more per call (a batch on two tables, a copy reads one object and writes another).
* :class:`Role`: explicit deny, else an allow, else the implicit deny; ``*``/``?`` in actions (any case) and
  resources, ``NotAction``/``NotResource``, and conditions (``String*``, ``Arn*``, ``Bool``, ``Null``, ``…IfExists``).
* :func:`check`: each call's requests against its component's role: what is denied, and each grant
  (action × resource of an Allow) that no recorded call used, to prune.

Resource-based policies (bucket and queue policies: here only TLS-only denies), SCPs and permission boundaries
are not evaluated; an operation with no mapping below raises :class:`UnmappedCall` rather than pass unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jobcore.pricing import default_prices

PARTITION = "aws"


class UnmappedCall(ValueError):
    """An API operation this module cannot turn into IAM requests: add it to the service's table."""


class UnsupportedPolicy(ValueError):
    """A template or policy construct the evaluator does not model (so it cannot say allow or deny)."""


# --- requests: what IAM authorizes a call as ------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    action: str  # service:Action, as IAM names it
    resource: str  # an ARN, or * for actions without resource-level permissions
    context: tuple[tuple[str, str], ...] = ()  # condition keys the call sets (s3:prefix, cloudwatch:namespace)

    def value(self, key: str) -> str | None:
        return next((v for k, v in self.context if k.lower() == key.lower()), None)


@dataclass(frozen=True)
class Account:
    """Where the calls are made: ARNs are built in this account and region."""

    account: str
    region: str
    partition: str = PARTITION

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{self.region if region else ''}:{self.account if account else ''}:{resource}"


def requests_for(call: Mapping[str, Any], where: Account) -> list[Request]:
    """The IAM requests of one recorded call (``local.aws_calls.CallRecorder``'s line: service, operation, params)."""
    service, operation, params = call["service"], call["operation"], call.get("params", {})
    mapper = _SERVICES.get(service)
    if mapper is None:
        raise UnmappedCall(f"no IAM mapping for {service}:{operation}")
    return mapper(operation, params, where)


_SQS_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
                "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}
_SQS_OPERATIONS = {"SendMessage", "ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "GetQueueAttributes",
                   "GetQueueUrl", "PurgeQueue", "SetQueueAttributes", "CreateQueue", "DeleteQueue", *_SQS_ACTIONS}


def _sqs(operation: str, params: Mapping[str, Any], where: Account) -> list[Request]:
    if operation not in _SQS_OPERATIONS:
        raise UnmappedCall(f"no IAM mapping for sqs:{operation}")
    if "QueueUrl" in params:
        url = urlsplit(params["QueueUrl"])
        account, name = url.path.strip("/").split("/")[-2:]
        host = url.hostname or ""
        region = host.split(".")[1] if host.startswith("sqs.") else where.region
        arn = f"arn:{where.partition}:sqs:{region}:{account}:{name}"
    else:
        arn = where.arn("sqs", params.get("QueueName", "*"))
    return [Request(f"sqs:{_SQS_ACTIONS.get(operation, operation)}", arn)]


_DYNAMO_TABLE = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable",
                 "ConditionCheckItem", "DescribeTimeToLive", "UpdateTimeToLive", "CreateTable", "DeleteTable"}
_DYNAMO_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem",
                    "Get": "GetItem"}


def _dynamodb(operation: str, params: Mapping[str, Any], where: Account) -> list[Request]:
    def table(name: str) -> str:
        return name if name.startswith("arn:") else where.arn("dynamodb", f"table/{name}")

    if operation in _DYNAMO_TABLE:
        arn = table(params["TableName"])
        if operation in ("Query", "Scan") and params.get("IndexName"):
            arn += f"/index/{params['IndexName']}"
        return [Request(f"dynamodb:{operation}", arn)]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [Request(f"dynamodb:{operation}", table(name)) for name in params["RequestItems"]]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return [Request(f"dynamodb:{_DYNAMO_TRANSACT[kind]}", table(item[kind]["TableName"]))
                for item in params["TransactItems"] for kind in item]
    raise UnmappedCall(f"no IAM mapping for dynamodb:{operation}")


_S3_OBJECT = {"GetObject": "GetObject", "HeadObject": "GetObject", "PutObject": "PutObject",
              "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject", "CompleteMultipartUpload": "PutObject",
              "AbortMultipartUpload": "AbortMultipartUpload", "ListParts": "ListMultipartUploadParts",
              "DeleteObject": "DeleteObject", "GetObjectTagging": "GetObjectTagging", "PutObjectTagging": "PutObjectTagging"}
_S3_BUCKET = {"ListObjectsV2": "ListBucket", "ListObjects": "ListBucket", "HeadBucket": "ListBucket",
              "ListObjectVersions": "ListBucketVersions", "ListMultipartUploads": "ListBucketMultipartUploads",
              "GetBucketLocation": "GetBucketLocation", "CreateBucket": "CreateBucket",
              "PutBucketNotificationConfiguration": "PutBucketNotification", "DeleteObjects": "DeleteObject"}


def _s3(operation: str, params: Mapping[str, Any], where: Account) -> list[Request]:
    def arn(path: str) -> str:
        return f"arn:{where.partition}:s3:::{path}"

    bucket = params.get("Bucket", "")
    if operation in _S3_OBJECT:
        return [Request(f"s3:{_S3_OBJECT[operation]}", arn(f"{bucket}/{params['Key']}"))]
    if operation == "CopyObject":
        source = params["CopySource"]
        source = f"{source['Bucket']}/{source['Key']}" if isinstance(source, Mapping) else source.lstrip("/").split("?")[0]
        return [Request("s3:GetObject", arn(source)), Request("s3:PutObject", arn(f"{bucket}/{params['Key']}"))]
    if operation in _S3_BUCKET:
        context = (("s3:prefix", params.get("Prefix", "")),) if _S3_BUCKET[operation] == "ListBucket" else ()
        return [Request(f"s3:{_S3_BUCKET[operation]}", arn(bucket), context)]
    raise UnmappedCall(f"no IAM mapping for s3:{operation}")


def _ecs(operation: str, params: Mapping[str, Any], where: Account) -> list[Request]:
    cluster = str(params.get("cluster") or "default").rsplit("/", 1)[-1]

    def named(kind: str, name: str) -> str:
        return name if name.startswith("arn:") else where.arn("ecs", f"{kind}/{cluster}/{name}")

    if operation == "DescribeServices":
        return [Request("ecs:DescribeServices", named("service", s)) for s in params["services"]]
    if operation == "UpdateService":
        return [Request("ecs:UpdateService", named("service", params["service"]))]
    if operation in ("UpdateTaskProtection", "GetTaskProtection"):
        return [Request(f"ecs:{operation}", named("task", t)) for t in params.get("tasks", ["*"])]
    raise UnmappedCall(f"no IAM mapping for ecs:{operation}")


def _secretsmanager(operation: str, params: Mapping[str, Any], where: Account) -> list[Request]:
    if operation not in ("GetSecretValue", "DescribeSecret"):
        raise UnmappedCall(f"no IAM mapping for secretsmanager:{operation}")
    secret = params["SecretId"]
    arn = secret if secret.startswith("arn:") else where.arn("secretsmanager", f"secret:{secret}")
    return [Request(f"secretsmanager:{operation}", arn)]


def _cloudwatch(operation: str, params: Mapping[str, Any], where: Account) -> list[Request]:
    if operation != "PutMetricData":
        raise UnmappedCall(f"no IAM mapping for cloudwatch:{operation}")
    return [Request("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", params.get("Namespace", "")),))]


def _sts(operation: str, params: Mapping[str, Any], where: Account) -> list[Request]:
    if operation != "GetCallerIdentity":  # the one STS call every principal may make, whatever its policies
        raise UnmappedCall(f"no IAM mapping for sts:{operation}")
    return []


_BEDROCK_OPERATIONS = {"InvokeModel", "InvokeModelWithResponseStream"}


def _bedrock_runtime(operation: str, params: Mapping[str, Any], where: Account) -> list[Request]:
    """An invocation through an inference profile is authorized on the profile and on the foundation model it may
    route to: each destination Region's (a geographic profile), or the source Region's and the Region-less ARN
    (a global profile, which routes to any commercial Region); a foundation model invoked directly, on itself.
    The profiles are the price file's (the table the stack grants from)."""
    if operation not in _BEDROCK_OPERATIONS:
        raise UnmappedCall(f"no IAM mapping for bedrock-runtime:{operation}")
    action, model_id = f"bedrock:{operation}", params["modelId"]

    def model(region: str, name: str) -> str:
        return f"arn:{where.partition}:bedrock:{region}::foundation-model/{name}"

    if model_id.startswith("anthropic."):
        return [Request(action, model(where.region, model_id))]
    profile = next((p for profiles in default_prices().claude.bedrock.values() for p in profiles.values() if p.id == model_id), None)
    if profile is None:
        raise UnmappedCall(f"bedrock-runtime:{operation} of {model_id!r}: not an inference profile of the price file")
    requests = [Request(action, where.arn("bedrock", f"inference-profile/{model_id}"))]
    if profile.destinations is None:
        return [*requests, Request(action, model(where.region, profile.model)), Request(action, model("", profile.model))]
    return [*requests, *(Request(action, model(region, profile.model)) for region in profile.destinations)]


_SERVICES = {"sqs": _sqs, "dynamodb": _dynamodb, "s3": _s3, "ecs": _ecs, "secretsmanager": _secretsmanager,
             "cloudwatch": _cloudwatch, "sts": _sts, "bedrock-runtime": _bedrock_runtime}


# --- policies ------------------------------------------------------------------------------------------


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _pattern(text: str, *, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one; everything else literal."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return bool(_pattern(pattern, ignore_case=ignore_case).match(value))


def _condition(operator: str, key: str, expected: list[str], request: Request) -> bool:
    """One condition key of one operator block. A key the request lacks: false, except for negated operators
    (true), ``…IfExists`` (true) and ``Null``."""
    value = request.value(key)
    if operator == "Null":
        return all((value is None) == (str(e).lower() == "true") for e in expected)
    base = operator.removesuffix("IfExists")
    if value is None:
        return operator.endswith("IfExists") or "Not" in base
    tests = {
        "StringEquals": lambda e: value == e, "StringNotEquals": lambda e: value == e,
        "StringEqualsIgnoreCase": lambda e: value.lower() == e.lower(),
        "StringNotEqualsIgnoreCase": lambda e: value.lower() == e.lower(),
        "StringLike": lambda e: matches(e, value), "StringNotLike": lambda e: matches(e, value),
        "ArnEquals": lambda e: value == e, "ArnNotEquals": lambda e: value == e,
        "ArnLike": lambda e: matches(e, value), "ArnNotLike": lambda e: matches(e, value),
        "Bool": lambda e: value.lower() == str(e).lower(),
    }
    if base not in tests:
        raise UnsupportedPolicy(f"condition operator {operator!r} is not modelled")
    hit = any(tests[base](str(e)) for e in expected)
    return not hit if "Not" in base else hit


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (operator, key, values)
    source: str = ""  # the policy (and Sid) it comes from

    @classmethod
    def parse(cls, raw: Mapping[str, Any], source: str) -> Statement:
        if "Principal" in raw or "NotPrincipal" in raw:
            raise UnsupportedPolicy(f"{source}: a resource policy's statement (Principal) in an identity policy")
        conditions = []
        for operator, block in (raw.get("Condition") or {}).items():
            if ":" in operator:  # ForAnyValue:/ForAllValues: over multivalued keys
                raise UnsupportedPolicy(f"{source}: condition operator {operator!r} is not modelled")
            conditions += [(operator, key, tuple(str(v) for v in _listify(values))) for key, values in block.items()]
        sid = f"#{raw['Sid']}" if raw.get("Sid") else ""
        return cls(effect=raw["Effect"], actions=tuple(_listify(raw.get("Action", []))),
                   not_actions=tuple(_listify(raw.get("NotAction", []))), resources=tuple(_listify(raw.get("Resource", []))),
                   not_resources=tuple(_listify(raw.get("NotResource", []))), conditions=tuple(conditions),
                   source=source + sid)

    def applies(self, request: Request) -> bool:
        if self.not_actions:
            if any(matches(a, request.action, ignore_case=True) for a in self.not_actions):
                return False
        elif not any(matches(a, request.action, ignore_case=True) for a in self.actions):
            return False
        if self.not_resources:
            if any(matches(r, request.resource) for r in self.not_resources):
                return False
        elif not any(matches(r, request.resource) for r in self.resources):
            return False
        return all(_condition(operator, key, list(values), request) for operator, key, values in self.conditions)

    def grants(self) -> list[tuple[str, str]]:
        """Each action × resource this statement allows, as written (wildcards kept)."""
        return [(a, r) for a in self.actions or (f"NotAction {self.not_actions}",)
                for r in self.resources or (f"NotResource {self.not_resources}",)]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    by: tuple[Statement, ...]  # the allows that apply, or the deny that decided


@dataclass
class Role:
    name: str
    statements: list[Statement]
    unevaluated: list[str] = field(default_factory=list)  # AWS managed policies: named, not modelled

    def decide(self, request: Request) -> Decision:
        applying = [s for s in self.statements if s.applies(request)]
        denies = tuple(s for s in applying if s.effect == "Deny")
        if denies:
            return Decision(False, denies)
        allows = tuple(s for s in applying if s.effect == "Allow")
        return Decision(bool(allows), allows)


# --- templates -------------------------------------------------------------------------------------------

_SUB = re.compile(r"\$\{([^}]+)\}")


class Templates:
    """The stacks' templates (``{stack name: template}``), resolved in ``where``; ``names``: physical names by
    logical id for the resources a run made (others keep their logical id as their name)."""

    def __init__(self, stacks: Mapping[str, Mapping[str, Any]], where: Account, *, names: Mapping[str, str] | None = None):
        self.stacks, self.where, self.names = stacks, where, dict(names or {})

    def resource(self, stack: str, logical_id: str) -> Mapping[str, Any]:
        try:
            return self.stacks[stack]["Resources"][logical_id]
        except KeyError:
            raise UnsupportedPolicy(f"{stack}: no resource {logical_id!r}") from None

    def name(self, logical_id: str) -> str:
        return self.names.get(logical_id, logical_id)

    def resolve(self, value: Any, stack: str) -> Any:
        if isinstance(value, list):
            return [self.resolve(v, stack) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v, stack) for k, v in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(stack, argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
            return self._attribute(stack, logical_id, self.resolve(attribute, stack))
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(p) for p in _flatten(self.resolve(parts, stack)))
        if function == "Fn::Sub":
            return self._sub(argument, stack)
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(items, stack)[int(self.resolve(index, stack))]
        if function == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text, stack)).split(separator)
        if function == "Fn::GetStackOutput":
            return self._output(self.resolve(argument["StackName"], stack), argument["OutputName"])
        if function == "Fn::ImportValue":
            return self._import(self.resolve(argument, stack))
        if function.startswith("Fn::"):
            raise UnsupportedPolicy(f"{stack}: intrinsic {function} is not modelled")
        return {function: self.resolve(argument, stack)}

    def _sub(self, argument: Any, stack: str) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {k: self.resolve(v, stack) for k, v in variables.items()}

        def one(found: re.Match[str]) -> str:
            name = found.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self._attribute(stack, logical_id, attribute))
            return str(self._ref(stack, name))

        return _SUB.sub(one, text)

    def _output(self, stack: str, output: str) -> Any:
        try:
            raw = self.stacks[stack]["Outputs"][output]["Value"]
        except KeyError:
            raise UnsupportedPolicy(f"no output {output!r} of stack {stack!r}") from None
        return self.resolve(raw, stack)

    def _import(self, export: str) -> Any:
        for stack, template in self.stacks.items():
            for output in (template.get("Outputs") or {}).values():
                if self.resolve((output.get("Export") or {}).get("Name"), stack) == export:
                    return self.resolve(output["Value"], stack)
        raise UnsupportedPolicy(f"no stack exports {export!r}")

    def _ref(self, stack: str, name: str) -> str:
        w = self.where
        pseudo = {"AWS::Partition": w.partition, "AWS::Region": w.region, "AWS::AccountId": w.account,
                  "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack}
        if name in pseudo:
            return pseudo[name]
        kind = self.resource(stack, name)["Type"]
        physical = self.name(name)
        refs = {
            "AWS::SQS::Queue": lambda: f"https://sqs.{w.region}.amazonaws.com/{w.account}/{physical}",
            "AWS::SecretsManager::Secret": lambda: w.arn("secretsmanager", f"secret:{physical}"),
            "AWS::ECS::Service": lambda: w.arn("ecs", f"service/{self._cluster_of(stack, name)}/{physical}"),
            "AWS::IAM::ManagedPolicy": lambda: w.arn("iam", f"policy/{physical}", region=False),
            "AWS::SNS::Topic": lambda: w.arn("sns", physical),
            "AWS::ECS::TaskDefinition": lambda: w.arn("ecs", f"task-definition/{physical}:1"),
        }
        return refs[kind]() if kind in refs else physical

    def _cluster_of(self, stack: str, service: str) -> str:
        cluster = self.resolve(self.resource(stack, service)["Properties"].get("Cluster", "default"), stack)
        return str(cluster).rsplit("/", 1)[-1]

    def _attribute(self, stack: str, logical_id: str, attribute: str) -> Any:
        w, kind, physical = self.where, self.resource(stack, logical_id)["Type"], self.name(logical_id)
        arns = {
            "AWS::SQS::Queue": lambda: w.arn("sqs", physical),
            "AWS::DynamoDB::Table": lambda: w.arn("dynamodb", f"table/{physical}"),
            "AWS::S3::Bucket": lambda: f"arn:{w.partition}:s3:::{physical}",
            "AWS::ECS::Cluster": lambda: w.arn("ecs", f"cluster/{physical}"),
            "AWS::IAM::Role": lambda: w.arn("iam", f"role/{physical}", region=False),
            "AWS::Logs::LogGroup": lambda: w.arn("logs", f"log-group:{physical}:*"),
            "AWS::Lambda::Function": lambda: w.arn("lambda", f"function:{physical}"),
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]()
        same_as_ref = {("AWS::SQS::Queue", "QueueUrl"), ("AWS::SQS::Queue", "QueueName"), ("AWS::ECS::Service", "Name"),
                       ("AWS::ECS::Service", "ServiceArn"), ("AWS::SNS::Topic", "TopicArn"), ("AWS::SNS::Topic", "TopicName"),
                       ("AWS::IAM::ManagedPolicy", "PolicyArn"), ("AWS::SecretsManager::Secret", "Id")}
        if (kind, attribute) in same_as_ref:
            return physical if attribute in ("QueueName", "Name", "TopicName") else self._ref(stack, logical_id)
        return f"{physical}.{attribute}"  # never an ARN: a grant on it matches no call

    # --- roles ---

    def role(self, stack: str, role_id: str) -> Role:
        """Every statement that applies to the role: its own ``Policies``, the ``AWS::IAM::Policy`` resources of any
        stack whose ``Roles`` name it, and the customer managed policies of any stack in its ``ManagedPolicyArns``."""
        properties = self.resource(stack, role_id).get("Properties", {})
        role = Role(f"{stack}/{role_id}", [])
        for policy in properties.get("Policies", []):
            role.statements += self._statements(policy["PolicyDocument"], stack, f"{role_id}/{policy.get('PolicyName')}")
        role_name = self._ref(stack, role_id)
        for other, template in self.stacks.items():
            for logical_id, resource in template["Resources"].items():
                if resource["Type"] == "AWS::IAM::Policy":
                    if role_name in self.resolve(resource["Properties"].get("Roles", []), other):
                        role.statements += self._statements(resource["Properties"]["PolicyDocument"], other, logical_id)
        managed = {self._ref(s, logical_id): (s, logical_id) for s, t in self.stacks.items()
                   for logical_id, r in t["Resources"].items() if r["Type"] == "AWS::IAM::ManagedPolicy"}
        for arn in self.resolve(properties.get("ManagedPolicyArns", []), stack):
            if arn in managed:
                where, logical_id = managed[arn]
                document = self.resource(where, logical_id)["Properties"]["PolicyDocument"]
                role.statements += self._statements(document, where, logical_id)
            else:
                role.unevaluated.append(str(arn))
        return role

    def _statements(self, document: Mapping[str, Any], stack: str, source: str) -> list[Statement]:
        return [Statement.parse(self.resolve(raw, stack), f"{source}[{i}]") for i, raw in enumerate(_listify(document["Statement"]))]


def _flatten(values: Iterable[Any]) -> list[Any]:
    return [v for value in values for v in (_flatten(value) if isinstance(value, list) else [value])]


# --- the check ------------------------------------------------------------------------------------------


@dataclass
class Report:
    denied: list[str] = field(default_factory=list)  # "component: action on resource (service:Operation)"
    unused: list[str] = field(default_factory=list)  # "component: actions on resources (policy)", see _unused
    checked: int = 0  # requests evaluated

    def lines(self) -> list[str]:
        return [f"{self.checked} requests checked, {len(self.denied)} denied, {len(self.unused)} grants unused",
                *(f"DENIED {d}" for d in self.denied), *(f"unused {u}" for u in self.unused)]


def check(calls: Iterable[Mapping[str, Any]], roles: Mapping[str, Role], where: Account, *,
          outside: Mapping[str, str] | None = None) -> Report:
    """Every recorded call's requests against its component's role. ``outside``: action patterns used on a
    component's behalf by something that records no call (the Lambda runtime writing its logs, the ECS agent's
    task protection), with why: their grants are listed apart, not as unused."""
    report = Report()
    used: set[tuple[str, str, str, str]] = set()  # component, statement source, action pattern, resource pattern
    for call in calls:
        component = call["component"]
        role = roles.get(component)
        name = f"{call['service']}:{call['operation']}{' (presigned)' if call.get('presigned') else ''}"
        if role is None:
            _once(report.denied, f"{component}: no role known for this component ({name})")
            continue
        for request in requests_for(call, where):
            report.checked += 1
            decision = role.decide(request)
            if not decision.allowed:
                _once(report.denied, f"{component}: {request.action} on {request.resource} ({name})")
                continue
            for statement in decision.by:
                used.update((component, statement.source, a, r) for a, r in statement.grants()
                            if matches(a, request.action, ignore_case=True) and matches(r, request.resource))
    for component, role in sorted(roles.items()):
        for statement in role.statements:
            if statement.effect == "Allow":
                report.unused += _unused(component, statement, used, outside or {})
        report.unused += [f"{component}: managed policy {arn} (not evaluated)" for arn in role.unevaluated]
    return report


def _unused(component: str, statement: Statement, used: set[tuple[str, str, str, str]], outside: Mapping[str, str]) -> list[str]:
    """A statement's grants no call used, compactly: the whole statement, or its actions no call used on any of its
    resources, and its resources no call used with any of its actions."""
    hits = {(a, r) for c, source, a, r in used if c == component and source == statement.source}
    grants = statement.grants()
    actions = list(dict.fromkeys(a for a, _ in grants))
    resources = list(dict.fromkeys(r for _, r in grants))
    idle_actions = [a for a in actions if not any(a == hit for hit, _ in hits)]
    idle_resources = [r for r in resources if not any(r == hit for _, hit in hits)]
    why = next((w for pattern, w in outside.items() if all(matches(pattern, a, ignore_case=True) for a in actions)), None)
    where = f"not a call of the code: {why}" if why else statement.source
    if not hits:
        return [f"{component}: {', '.join(actions)} on {', '.join(resources)} ({where})"]
    return ([f"{component}: {', '.join(idle_actions)} on any of its resources ({where})"] if idle_actions else []) + \
           ([f"{component}: {', '.join(idle_resources)} with any of its actions ({where})"] if idle_resources else [])


def _once(lines: list[str], line: str) -> None:
    if line not in lines:
        lines.append(line)
