"""Pieces shared by the three kinds: the model base, rules, conditions, pod settings."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import PydanticCustomError

from mlops_operator import GROUP

# A literal, for the type of `apiVersion`; a unit test checks it against GROUP and VERSION.
API_VERSION: Final = "mlops.seed.dev/v1alpha1"
# Label and annotation keys the operator sets on the objects it creates.
RESERVED_PREFIX = f"{GROUP}/"
# Environment variables the operator injects into the containers it runs.
RESERVED_ENV_PREFIX = "MLOPS_"

# Regular expressions are RE2-compatible: the API server checks them with Go's regexp.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
URI = r"^[a-z][a-z0-9+.-]*://[!-~]+$"
DIGEST = r"^sha256:[a-f0-9]{64}$"
QUANTITY = r"^[+]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+]?[0-9]+))?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
METRIC_NAME = r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"

DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
# A model name leaves room for `-v<version>` in a 63-character label value.
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=DNS_LABEL)]
DnsSubdomain = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
]
LabelKey = Annotated[str, StringConstraints(max_length=317, pattern=QUALIFIED_NAME)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]
Image = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[!-~]+$")]
Arg = Annotated[str, StringConstraints(max_length=4096)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=URI)]
Digest = Annotated[str, StringConstraints(max_length=71, pattern=DIGEST)]
MetricName = Annotated[str, StringConstraints(max_length=63, pattern=METRIC_NAME)]
# A Kubernetes quantity: `2`, `500m`, `4Gi`. YAML users write plain numbers too.
Quantity = Annotated[
    Annotated[int, Field(ge=0)]
    | Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY)],
    Field(union_mode="left_to_right"),
]
# Finite: JSON (and so the API server) has no NaN or infinity, which is what a diverged
# training run's loss often is. Refused here, with the metric's name, not by the server.
Metrics = Annotated[
    dict[MetricName, Annotated[float, Field(allow_inf_nan=False)]], Field(max_length=64)
]
ModelFormat = Literal[
    "sklearn", "xgboost", "lightgbm", "pytorch", "onnx", "tensorflow", "huggingface", "custom"
]
Hyperparameters = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
        Annotated[str, StringConstraints(max_length=1024)],
    ],
    Field(max_length=64),
]
# Children are named `<name>-<suffix>`, and a Service name must be a DNS-1035 label.
MAX_NAME_LENGTH = 50


@dataclass(frozen=True)
class Rule:
    """A cross-field check, enforced twice: as CEL by the API server, in Python by pydantic.

    `field` is the alias path, relative to the model, of the field the rule is about
    (the CEL fieldPath); the API server and `describe_errors` report the rule there.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field: str = ""


@dataclass(frozen=True)
class TransitionRule:
    """A check of an update against the stored object (CEL `oldSelf`)."""

    cel: str
    message: str
    check: Callable[[Any, Any], bool]
    field: str = ""


def _schema_extra(schema: dict[str, Any], cls: type[Any]) -> None:
    rules: Sequence[Rule | TransitionRule] = getattr(cls, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [cel_validation(rule) for rule in rules]


def cel_regex(pattern: str) -> str:
    """A regular expression as a CEL raw string literal, so that backslashes stay as they are."""
    assert "'" not in pattern, pattern
    return f"r'{pattern}'"


def cel_validation(rule: Rule | TransitionRule) -> dict[str, str]:
    """The `x-kubernetes-validations` entry of a rule."""
    entry = {"rule": rule.cel, "message": rule.message}
    if rule.field:
        entry["fieldPath"] = "." + rule.field
    return entry


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, strict like the API server."""

    # strict: the API server rejects "3" for an integer, so the models do too.
    # extra="forbid": the server rejects unknown fields (kubectl's strict field validation).
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        json_schema_extra=_schema_extra,
    )

    rules: ClassVar[tuple[Rule | TransitionRule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).rules:
            if isinstance(rule, Rule) and not rule.check(self):
                raise _rule_error(rule)
        return self

    def update_errors(self, old: Self) -> list[str]:
        """Messages of the transition rules this object, as an update of `old`, breaks."""
        return [
            _prefixed(rule.field, rule.message)
            for rule in type(self).rules
            if isinstance(rule, TransitionRule) and not rule.check(old, self)
        ]

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _prefixed(field: str, message: str) -> str:
    return f"{field}: {message}" if field else message


def _rule_error(rule: Rule) -> PydanticCustomError:
    return PydanticCustomError(
        "mlops_rule", "{text}", {"field": rule.field, "text": _prefixed(rule.field, rule.message)}
    )


def describe_errors(error: ValidationError) -> list[str]:
    """One `path: message` line per error, with paths as the API server prints them."""
    lines = []
    for item in error.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        path = path.lstrip(".")
        ctx = item.get("ctx") or {}
        message = item["msg"]
        # A rule about a field is raised by its model: move the field into the path.
        if ctx.get("field"):
            path = f"{path}.{ctx['field']}" if path else ctx["field"]
            message = ctx["text"].removeprefix(f"{ctx['field']}: ")
        lines.append(f"{path}: {message}" if path else message)
    return lines


def immutable_fields(model: type[ApiModel], mutable: Sequence[str]) -> tuple[TransitionRule, ...]:
    """One transition rule per field of `model` except `mutable`: the field may not change.

    Per field rather than `self == oldSelf` so that the error names the field; the `has()`
    pair catches an optional field being added or removed.
    """
    rules = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if alias in mutable:
            continue
        if info.is_required():
            cel = f"self.{alias} == oldSelf.{alias}"
        else:
            cel = (
                f"has(self.{alias}) == has(oldSelf.{alias})"
                f" && (!has(self.{alias}) || self.{alias} == oldSelf.{alias})"
            )
        rules.append(
            TransitionRule(
                cel=cel,
                message=f"is immutable; only {', '.join(mutable)} may change",
                check=_unchanged(name),
                field=alias,
            )
        )
    return tuple(rules)


def name_rule(kind: str, max_length: int = MAX_NAME_LENGTH, why: str = "") -> Rule:
    """The name of a kind whose children carry its name: a short DNS-1035 label."""
    return Rule(
        cel=(
            f"size(self.metadata.name) <= {max_length}"
            f" && self.metadata.name.matches({cel_regex(DNS_1035_LABEL)})"
        ),
        message=f"metadata.name: a {kind} name must be a DNS-1035 label (lowercase letters,"
        f" digits and '-', starting with a letter) of at most {max_length} characters{why}",
        check=lambda r: r.metadata.name is None or _is_short_dns_1035(r.metadata.name, max_length),
    )


# The highest version number of a Model or a Dataset: `<name>-v<N>` stays a valid name.
MAX_VERSION = 999999


def versioned_name(name: str, version: int) -> str:
    """The object name of one version of a registry entry (Model, Dataset): `<name>-v<N>`."""
    return f"{name}-v{version}"


def versioned_name_rule(name_field: str) -> Rule:
    """A registry entry's name is derived from `spec.<name_field>` and `spec.version`, so
    that two objects can never claim the same version."""
    attr = to_snake(name_field)
    return Rule(
        # format(), not string(int): the cost estimator cannot bound string()'s length.
        cel=f"self.metadata.name == '%s-v%d'.format([self.spec.{name_field}, self.spec.version])",
        message=f"metadata.name: must be <spec.{name_field}>-v<spec.version>",
        check=lambda r: (
            r.metadata.name is None
            or r.metadata.name == versioned_name(getattr(r.spec, attr), r.spec.version)
        ),
    )


def _is_short_dns_1035(name: str, max_length: int) -> bool:
    return len(name) <= max_length and re.fullmatch(DNS_1035_LABEL, name) is not None


def _unchanged(name: str) -> Callable[[Any, Any], bool]:
    return lambda old, new: bool(getattr(old, name) == getattr(new, name))


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; the API server owns the rest."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str | None = Field(default=None, description="Name of the object.")
    namespace: str | None = Field(default=None, description="Namespace of the object.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the object.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the object."
    )
    generation: int | None = Field(default=None, description="Generation of the spec.")
    uid: str | None = Field(default=None, description="Unique id of the object.")


class Condition(ApiModel):
    """One aspect of the object's state, following the Kubernetes API conventions."""

    type: Annotated[str, StringConstraints(max_length=316, pattern=QUALIFIED_NAME)] = Field(
        description="Type of the condition in CamelCase, for example `Ready`."
    )
    status: Literal["True", "False", "Unknown"] = Field(
        description="Status of the condition: True, False or Unknown."
    )
    reason: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        ),
    ] = Field(description="Machine-readable reason for the last transition, in CamelCase.")
    message: Annotated[str, StringConstraints(max_length=32768)] = Field(
        description="Human-readable details of the last transition."
    )
    last_transition_time: datetime = Field(
        strict=False, description="When the status last changed."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` the condition was computed from."
    )


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class PodMetadata(ApiModel):
    """Labels and annotations added to every pod the operator creates for this object."""

    rules = (
        Rule(
            cel=f"!has(self.labels) || self.labels.all(k, !k.startsWith('{RESERVED_PREFIX}'))",
            message=f"keys under {RESERVED_PREFIX} are reserved for the operator",
            check=lambda m: not any(k.startswith(RESERVED_PREFIX) for k in m.labels),
            field="labels",
        ),
    )

    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Labels added to every pod."
    )
    annotations: dict[LabelKey, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=32, description="Annotations added to every pod."
    )


class KeyRef(ApiModel):
    """A key of a Secret or ConfigMap in the object's namespace."""

    name: DnsSubdomain = Field(description="Name of the Secret or ConfigMap.")
    key: Annotated[
        str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    ] = Field(description="Key within it.")


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from."""

    rules = (
        Rule(
            cel="has(self.secretKeyRef) != has(self.configMapKeyRef)",
            message="set exactly one of secretKeyRef or configMapKeyRef",
            check=lambda s: (s.secret_key_ref is None) != (s.config_map_key_ref is None),
        ),
    )

    secret_key_ref: KeyRef | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeyRef | None = Field(default=None, description="A key of a ConfigMap.")


class EnvVar(ApiModel):
    """An environment variable of the container."""

    rules = (
        Rule(
            cel=f"!self.name.startsWith('{RESERVED_ENV_PREFIX}')",
            message=f"names starting with {RESERVED_ENV_PREFIX} are reserved for the operator",
            check=lambda e: not e.name.startswith(RESERVED_ENV_PREFIX),
            field="name",
        ),
        Rule(
            cel="!(has(self.value) && has(self.valueFrom))",
            message="set value or valueFrom, not both",
            check=lambda e: e.value is None or e.value_from is None,
        ),
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ENV_NAME)] = Field(
        description="Name of the variable."
    )
    value: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None, description="Literal value."
    )
    value_from: EnvVarSource | None = Field(
        default=None, description="Take the value from a Secret or ConfigMap instead."
    )


Env = Annotated[
    list[EnvVar],
    Field(
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
]


def _extended_resources_in_limits(r: ResourceRequirements) -> bool:
    return all(
        "/" not in name or (name in r.limits and str(r.limits[name]) == str(value))
        for name, value in r.requests.items()
    )


class ResourceRequirements(ApiModel):
    """Compute resources of one container, as in a Pod: GPUs go in `limits`."""

    rules = (
        Rule(
            cel=(
                "!has(self.requests) || self.requests.all(k, !k.contains('/') || (has(self.limits)"
                " && k in self.limits && string(self.limits[k]) == string(self.requests[k])))"
            ),
            message="an extended resource such as nvidia.com/gpu must be set in limits too,"
            " with the same value",
            check=_extended_resources_in_limits,
            field="requests",
        ),
    )

    requests: dict[LabelKey, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        description="Minimum resources, for example `cpu: 500m`, `memory: 1Gi`.",
    )
    limits: dict[LabelKey, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        description="Maximum resources, for example `memory: 2Gi`, `nvidia.com/gpu: 1`.",
    )


class Toleration(ApiModel):
    """Lets pods run on nodes with a matching taint."""

    rules = (
        Rule(
            cel="!has(self.value) || self.value == '' || self.operator != 'Exists'",
            message="must be empty when operator is Exists",
            check=lambda t: t.operator != "Exists" or t.value == "",
            field="value",
        ),
        Rule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="only applies to the NoExecute effect",
            check=lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            field="tolerationSeconds",
        ),
    )

    key: Annotated[str, StringConstraints(max_length=317, pattern=r"^$|" + QUALIFIED_NAME)] = Field(
        default="", description="Taint key; empty with operator Exists matches every taint."
    )
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: LabelValue = Field(default="", description="Taint value, for operator Equal.")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="", description="Taint effect to tolerate; empty means every effect."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, le=31536000, description="For NoExecute: how long the pod stays bound."
    )


class Scheduling(ApiModel):
    """Where the pods may run."""

    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Node labels the pods require."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the pods tolerate."
    )
    priority_class_name: DnsSubdomain | None = Field(
        default=None, description="PriorityClass of the pods."
    )


class LabelSelectorRequirement(ApiModel):
    """A label key, an operator and values."""

    rules = (
        Rule(
            cel="(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
            message="must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
            check=lambda r: (r.operator in ("In", "NotIn")) == bool(r.values),
            field="values",
        ),
    )

    key: LabelKey = Field(description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key's value is compared with `values`."
    )
    values: list[LabelValue] = Field(
        default_factory=list, max_length=32, description="Values for In and NotIn."
    )


class LabelSelector(ApiModel):
    """Selects objects by label; all requirements must hold (empty selects everything)."""

    match_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Labels that must have these values."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Requirements on labels."
    )


# A dataset name leaves room for `-v<version>`, as a model name does.
DatasetName = ModelName
DatasetVersion = Annotated[
    Annotated[int, Field(ge=1, le=999999)]
    | Annotated[str, StringConstraints(max_length=6, pattern=r"^latest$")],
    Field(union_mode="left_to_right"),
]


class DatasetRef(ApiModel):
    """A version of a registered Dataset (`<name>-v<version>`)."""

    name: DatasetName = Field(
        description="The dataset's name (`spec.datasetName` of its versions)."
    )
    version: DatasetVersion = Field(
        default="latest",
        description="A version number, or `latest`: the newest Ready version when the run starts.",
    )


class TrainingData(ApiModel):
    """The data the training reads: a registered Dataset (`ref`) or a plain `uri`."""

    rules = (
        Rule(
            cel="has(self.uri) != has(self.ref)",
            message="set exactly one of uri or ref",
            check=lambda d: (d.uri is None) != (d.ref is None),
        ),
        Rule(
            cel="!has(self.ref) || !has(self.digest)",
            message="only with uri: a registered Dataset carries its own digest",
            check=lambda d: d.ref is None or d.digest is None,
            field="digest",
        ),
    )

    uri: Uri | None = Field(
        default=None, description="Where the data is, for example `s3://bucket/iris.csv`."
    )
    digest: Digest | None = Field(
        default=None,
        description="Content digest (`sha256:<hex>`) pinning the exact data, for lineage.",
    )
    ref: DatasetRef | None = Field(
        default=None,
        description="A registered Dataset version, resolved when the run starts; its uri and"
        " digest are passed as `MLOPS_DATASET_URI` and `MLOPS_DATASET_DIGEST`.",
    )


class ResolvedDataset(ApiModel):
    """The exact data a run read: what `TrainingData` resolved to."""

    uri: Uri = Field(description="Where the data is.")
    digest: Digest | None = Field(default=None, description="Content digest, `sha256:<hex>`.")
    name: DatasetName | None = Field(
        default=None, description="The registered Dataset's name, when read through `ref`."
    )
    version: int | None = Field(
        default=None, ge=1, le=999999, description="The registered Dataset's version."
    )


class Resource(ApiModel):
    """Base of the three kinds: apiVersion, kind, metadata."""

    api_version: Literal["mlops.seed.dev/v1alpha1"] = Field(
        default=API_VERSION, description="API group and version."
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class KindInfo:
    """What the CRD of a kind needs beyond the schema."""

    kind: str
    plural: str
    short_name: str
    resource: type[Resource]
    spec: type[ApiModel]
    status: type[ApiModel]
    printer_columns: tuple[PrinterColumn, ...]
    # Bounds metadata.name in the schema: CEL rules on it are costed by their longest input.
    max_name_length: int

    @property
    def singular(self) -> str:
        return self.kind.lower()


def ready_column() -> PrinterColumn:
    return PrinterColumn(
        "Ready",
        "string",
        '.status.conditions[?(@.type=="Ready")].status',
        "Status of the Ready condition.",
    )


def age_column() -> PrinterColumn:
    return PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")
