"""ModelDeployment: serves a Model version and rolls out new ones."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from mlops_operator.api.common import (
    MAX_NAME_LENGTH,
    MAX_VERSION,
    ApiModel,
    Arg,
    Conditions,
    DnsSubdomain,
    Env,
    Image,
    KindInfo,
    LabelSelector,
    MetricName,
    ModelName,
    PodMetadata,
    PrinterColumn,
    Resource,
    ResourceRequirements,
    Rule,
    Scheduling,
    age_column,
    name_rule,
    ready_column,
)

Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]
# Rollouts kept in status.history, newest first.
HISTORY_LIMIT = 10
# A count of pods or a percentage of the replicas, as in a Deployment's strategy.
IntOrPercent = Annotated[
    Annotated[int, Field(ge=0, le=100)]
    | Annotated[str, StringConstraints(max_length=4, pattern=r"^(100|[1-9]?[0-9])%$")],
    Field(union_mode="left_to_right"),
]


class MetricGate(ApiModel):
    """A condition on one of a Model's metrics, for example `accuracy >= 0.9`."""

    metric: MetricName = Field(description="Name of the metric in the Model's spec.metrics.")
    operator: Literal[">=", ">", "<=", "<"] = Field(
        description="How the metric compares with value; also says which direction is better."
    )
    value: float = Field(description="The threshold.")


class SelectionPolicy(ApiModel):
    """Follow the newest version that matches the selector and passes every gate."""

    rules = (
        Rule(
            cel="!self.mustBeatCurrent || (has(self.gates) && size(self.gates) > 0)",
            message="mustBeatCurrent needs at least one gate: the gates name the metrics"
            " to compare",
            check=lambda p: not p.must_beat_current or bool(p.gates),
            field="gates",
        ),
    )

    selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Labels the Model must have, for example `mlops.seed.dev/approved: 'true'`.",
    )
    gates: list[MetricGate] = Field(
        default_factory=list, max_length=16, description="Metric conditions; all must hold."
    )
    must_beat_current: bool = Field(
        default=False,
        description="Also require the candidate to be at least as good as the served version"
        " on every gate's metric, in the gate's direction.",
    )


class ModelChoice(ApiModel):
    """Which Model version to serve: a pinned version or a policy."""

    rules = (
        Rule(
            cel="has(self.version) != has(self.policy)",
            message="set exactly one of version (pinned) or policy (newest matching version)",
            check=lambda c: (c.version is None) != (c.policy is None),
        ),
    )

    name: ModelName = Field(description="The model name (spec.modelName of Models).")
    version: Version | None = Field(default=None, description="Serve exactly this version.")
    policy: SelectionPolicy | None = Field(
        default=None, description="Serve the newest version that the policy accepts."
    )


class Runtime(ApiModel):
    """The serving container: a preset for the model format, or any image speaking HTTP."""

    rules = (
        Rule(
            cel="has(self.preset) != has(self.image)",
            message="set exactly one of preset or image",
            check=lambda r: (r.preset is None) != (r.image is None),
        ),
        Rule(
            cel="has(self.image) || !(has(self.command) || has(self.args) || has(self.port))",
            message="command, args and port are only for a custom image; a preset sets its own",
            check=lambda r: r.image is not None or not (r.command or r.args or r.port),
        ),
        Rule(
            cel="!has(self.port) || !(self.port in [9080, 9081])",
            message="9080 and 9081 are the drift monitor's ports in the pod; choose another",
            check=lambda r: r.port not in (9080, 9081),
            field="port",
        ),
    )

    preset: Literal["mlserver"] | None = Field(
        default=None, description="`mlserver`: MLServer, for sklearn, xgboost and lightgbm models."
    )
    image: Image | None = Field(default=None, description="A custom serving image speaking HTTP.")
    command: list[Arg] = Field(
        default_factory=list, max_length=32, description="Entrypoint of the custom image."
    )
    args: list[Arg] = Field(
        default_factory=list, max_length=64, description="Arguments of the custom image."
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="HTTP port of the custom image (default 8080)."
    )
    env: Env = Field(default_factory=list, description="Extra environment variables.")


class Storage(ApiModel):
    """How serving pods fetch the artifact (their `storage-init` init container)."""

    env: Env = Field(
        default_factory=list,
        description=(
            "Environment of storage-init: the object store's endpoint and credentials, for"
            " example AWS_ENDPOINT_URL and AWS_ACCESS_KEY_ID from a Secret (valueFrom),"
            " which stays referenced, never copied."
        ),
    )


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler on CPU utilisation."""

    rules = (
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="must not exceed maxReplicas",
            check=lambda a: a.min_replicas <= a.max_replicas,
            field="minReplicas",
        ),
    )

    min_replicas: int = Field(default=1, ge=1, le=100, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=100, description="Most replicas.")
    target_cpu_utilization_percentage: int = Field(
        default=80,
        ge=1,
        le=100,
        alias="targetCPUUtilizationPercentage",
        description="Average CPU use, in percent of the request, that the autoscaler aims for.",
    )


class RollingUpdate(ApiModel):
    """Replace pods gradually, as a Deployment does."""

    rules = (
        Rule(
            cel=(
                "!(string(self.maxSurge) in ['0', '0%']"
                " && string(self.maxUnavailable) in ['0', '0%'])"
            ),
            message="maxSurge and maxUnavailable must not both be zero",
            check=lambda r: not {str(r.max_surge), str(r.max_unavailable)} <= {"0", "0%"},
            field="maxSurge",
        ),
    )

    max_surge: IntOrPercent = Field(default="25%", description="Pods above the desired count.")
    max_unavailable: IntOrPercent = Field(
        default="25%", description="Pods that may be unavailable."
    )


class CanaryStep(ApiModel):
    """Send a share of the replicas to the new version, then wait."""

    weight: int = Field(ge=1, le=99, description="Percentage of replicas running the new version.")
    pause_seconds: int = Field(
        default=0, ge=0, le=86400, description="How long to hold this step once its pods are Ready."
    )


Share = Annotated[float, Field(ge=0, le=1)]
FeatureName = Annotated[str, StringConstraints(max_length=128)]
Psi = Annotated[float, Field(ge=0, le=100)]


class Analysis(ApiModel):
    """What the canary must show, at the end of every step's pause, before it advances: read
    from the monitors in both versions' pods, over the traffic since the step's pods were
    Ready. Failing, the canary is rolled back (reason AnalysisFailed)."""

    min_requests: int = Field(
        default=50,
        ge=1,
        le=10_000_000,
        description="Requests the canary must have answered in the step before it is judged;"
        " until then the step waits, for at most progressDeadlineSeconds after its pause.",
    )
    max_error_rate: Share = Field(
        default=0.05,
        strict=False,
        description="Largest share of the canary's requests answered with a 5xx status.",
    )
    error_rate_margin: Share = Field(
        default=0.01,
        strict=False,
        description="How far the canary's error rate may exceed the stable version's.",
    )
    max_latency_p99_ms: int | None = Field(
        default=None,
        ge=1,
        le=600_000,
        description="Largest p99 latency of the canary, in milliseconds (none: no limit).",
    )
    latency_margin_percent: int = Field(
        default=50,
        ge=0,
        le=10_000,
        description="How far the canary's p99 latency may exceed the stable version's, in"
        " percent (differences under 5 ms never count: the histogram's resolution).",
    )
    max_drift: Psi | None = Field(
        default=None,
        strict=False,
        description="Largest PSI of any canary feature against its own Model's reference"
        " (default: spec.monitoring.threshold). Judged with spec.monitoring.minSamples rows"
        " and a reference on each version; otherwise reported, not judged.",
    )
    drift_margin: Psi = Field(
        default=0.1,
        strict=False,
        description="How far the canary's highest feature PSI may exceed the stable version's.",
    )


class Canary(ApiModel):
    """Shift to the new version in weighted steps, then promote it."""

    rules = (
        Rule(
            cel=(
                "self.steps.map(s, s.weight).isSorted()"
                " && self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight))"
            ),
            message="weights must be strictly increasing",
            check=lambda c: all(a.weight < b.weight for a, b in itertools.pairwise(c.steps)),
            field="steps",
        ),
    )

    steps: list[CanaryStep] = Field(
        min_length=1, max_length=10, description="The steps, in order; then full promotion."
    )
    analysis: Analysis | None = Field(
        default=None,
        description="Checks of the canary's error rate, latency and drift that every step"
        " must pass before it advances (none: a step advances once Ready and paused).",
    )


class Strategy(ApiModel):
    """How a new version replaces the served one."""

    rules = (
        Rule(
            cel="(self.type == 'Canary') == has(self.canary)",
            message="must be set exactly when type is Canary",
            check=lambda s: (s.type == "Canary") == (s.canary is not None),
            field="canary",
        ),
        Rule(
            cel="!has(self.rollingUpdate) || self.type == 'RollingUpdate'",
            message="is only for type RollingUpdate",
            check=lambda s: s.rolling_update is None or s.type == "RollingUpdate",
            field="rollingUpdate",
        ),
    )

    type: Literal["RollingUpdate", "Canary"] = Field(
        default="RollingUpdate", description="RollingUpdate or Canary."
    )
    rolling_update: RollingUpdate | None = Field(
        default=None, description="Settings of RollingUpdate."
    )
    canary: Canary | None = Field(default=None, description="Settings of Canary.")


class Monitoring(ApiModel):
    """Drift monitoring of the served version against its Model's reference profile."""

    # The API server rounds a fractional `minimum` away (0.001 is checked as 0): the
    # thresholds' "more than 0" is a rule.
    rules = (
        Rule(
            cel="!has(self.threshold) || self.threshold > 0.0",
            message="must be more than 0",
            check=lambda m: m.threshold > 0,
            field="threshold",
        ),
        Rule(
            cel="!has(self.featureThresholds) || self.featureThresholds.all(k,"
            " self.featureThresholds[k] > 0.0)",
            message="every threshold must be more than 0",
            check=lambda m: all(v > 0 for v in m.feature_thresholds.values()),
            field="featureThresholds",
        ),
    )

    enabled: bool = Field(
        default=True,
        description="Put the monitor in front of the runtime when the served Model has a"
        " reference profile (`spec.artifact.reference`) or the canary has an analysis;"
        " false: never.",
    )
    window_seconds: int = Field(
        default=600, ge=60, le=3600, description="Traffic of the last this many seconds is scored."
    )
    min_samples: int = Field(
        default=500,
        ge=1,
        le=10_000_000,
        description="Fewer rows than this in the window: Drifted is Unknown, not a verdict.",
    )
    threshold: Psi = Field(
        default=0.2,
        strict=False,
        description="PSI over which a feature counts as drifted (0.2: the usual"
        ' "significant shift").',
    )
    feature_thresholds: dict[FeatureName, Psi] = Field(
        default_factory=dict,
        max_length=1000,
        description="PSI thresholds of single features, by name, over `threshold`.",
    )
    interval_seconds: int = Field(
        default=60, ge=10, le=3600, description="How often the operator reads the monitors."
    )
    max_request_bytes: int = Field(
        default=64 * 2**20,
        ge=2**20,
        le=2**30,
        description="A request body over this many bytes is refused (413) by the monitor,"
        " before it reaches the runtime.",
    )
    max_binned_bytes: int = Field(
        default=4 * 2**20,
        ge=2**16,
        le=64 * 2**20,
        description="Only request bodies and answers under this many bytes are binned; larger"
        " ones pass through, counted as `too-large`. The monitor's memory limit grows with it.",
    )
    max_rows_per_request: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Rows of one request counted in the window at most (evenly spaced), so"
        " that no single call outweighs many.",
    )


class IpBlock(ApiModel):
    """Addresses, as in a NetworkPolicy."""

    cidr: str = Field(max_length=64, pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$", description="A CIDR.")
    except_: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, alias="except", max_length=16, description="CIDRs left out."
    )


class NetworkPeer(ApiModel):
    """Who may connect, as a NetworkPolicy's `from` entry."""

    namespace_selector: LabelSelector | None = Field(
        default=None, description="Pods of the namespaces with these labels."
    )
    pod_selector: LabelSelector | None = Field(
        default=None, description="Pods with these labels (in those namespaces, or this one)."
    )
    ip_block: IpBlock | None = Field(default=None, description="These addresses.")


class NetworkAccess(ApiModel):
    """The NetworkPolicy the operator keeps for the serving pods (`<name>-serving`)."""

    enabled: bool = Field(
        default=True,
        description="Keep it; false: none (the pods' traffic is whatever your policies say).",
    )
    inference_from: list[NetworkPeer] = Field(
        default_factory=list,
        max_length=16,
        description="Who may call the serving port; empty: everyone. The runtime's own port"
        " behind the monitor is open to no one, so the monitor cannot be bypassed.",
    )
    monitor_from: list[NetworkPeer] = Field(
        default_factory=list,
        max_length=16,
        description="Who may read the monitor's port (/drift, /metrics) besides the operator's"
        " pods and the namespaces the operator's install names for Prometheus.",
    )


class ModelDeploymentSpec(ApiModel):
    """What to serve and how to roll it out."""

    rules = (
        Rule(
            cel="!(has(self.replicas) && has(self.autoscaling))",
            message="set replicas or autoscaling, not both",
            check=lambda s: s.replicas is None or s.autoscaling is None,
            field="replicas",
        ),
        Rule(
            cel="!has(self.strategy) || !has(self.strategy.canary)"
            " || !has(self.strategy.canary.analysis)"
            " || !has(self.monitoring) || !has(self.monitoring.enabled) || self.monitoring.enabled",
            message="canary analysis reads the serving monitors: it needs monitoring enabled",
            check=lambda s: (
                s.strategy.canary is None
                or s.strategy.canary.analysis is None
                or s.monitoring.enabled
            ),
            field="monitoring.enabled",
        ),
    )

    model: ModelChoice = Field(description="Which Model version to serve.")
    runtime: Runtime = Field(description="The serving container.")
    storage: Storage = Field(
        default_factory=Storage, description="How serving pods fetch the artifact."
    )
    replicas: int | None = Field(
        default=None, ge=0, le=100, description="Fixed number of replicas (default 1)."
    )
    autoscaling: Autoscaling | None = Field(
        default=None, description="Scale on CPU instead of a fixed number of replicas."
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Resources of each serving pod."
    )
    # A default instance, not a factory, so the CRD defaults the type too (kubectl get shows it).
    strategy: Strategy = Field(
        default=Strategy(), description="How a new version replaces the served one."
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="A new version not Ready within this time counts as failed: at the start,"
        " at each canary step, during the promotion, and once Ready, not Ready again for this"
        " long.",
    )
    auto_rollback: bool = Field(
        default=True, description="Go back to the previous version when a new one fails."
    )
    port: int = Field(default=80, ge=1, le=65535, description="Port of the Service.")
    service_account_name: DnsSubdomain | None = Field(
        default=None, description="ServiceAccount the pods run as (for access to the artifact)."
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling, description="Node selection and priority of the pods."
    )
    pod_metadata: PodMetadata = Field(
        default_factory=PodMetadata, description="Labels and annotations added to every pod."
    )
    monitoring: Monitoring = Field(
        default_factory=Monitoring, description="Drift monitoring of the served version."
    )
    network_policy: NetworkAccess = Field(
        default_factory=NetworkAccess,
        description="Who may reach the serving pods (enforced where the cluster's network"
        " enforces NetworkPolicies).",
    )


class CanaryStatus(ApiModel):
    """An ongoing canary."""

    version: Version = Field(description="The version being tried.")
    step: int = Field(ge=0, le=9, description="Index of the current step in spec.strategy.")
    weight: int = Field(ge=0, le=100, description="Current percentage of new replicas.")
    step_started_at: datetime | None = Field(
        default=None, strict=False, description="When the current step's pods became Ready."
    )
    step_entered_at: datetime | None = Field(
        default=None,
        strict=False,
        description="When the current step (or the promotion) began: its pods must be Ready"
        " within progressDeadlineSeconds of it.",
    )
    unready_since: datetime | None = Field(
        default=None,
        strict=False,
        description="When the current step's pods, Ready before, stopped being Ready: back"
        " within progressDeadlineSeconds, or the step fails.",
    )
    restarts: int = Field(
        default=0,
        ge=0,
        le=2**31 - 1,
        description="Container restarts of the canary's pods when the step's pods became"
        " Ready: one more during the step fails it.",
    )


class RolloutRecord(ApiModel):
    """One rollout, for the history."""

    version: Version = Field(description="The version rolled out.")
    model: DnsSubdomain = Field(description="Name of the Model object.")
    started_at: datetime = Field(strict=False, description="When the rollout began.")
    finished_at: datetime | None = Field(default=None, strict=False, description="When it ended.")
    outcome: Literal["Progressing", "Succeeded", "RolledBack", "Superseded"] = Field(
        description="How it ended."
    )
    message: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="", description="Details, such as why it was rolled back."
    )


class FeatureDrift(ApiModel):
    name: FeatureName = Field(description="The feature (or `prediction`).")
    psi: float = Field(strict=False, description="Population stability index in the window.")
    js_distance: float = Field(
        strict=False, description="Jensen-Shannon distance (base 2, 0 to 1) in the window."
    )
    threshold: float | None = Field(
        default=None, strict=False, description="Its PSI threshold; none for the predictions."
    )


class DriftStatus(ApiModel):
    """The served version's traffic against its reference profile, as last read."""

    version: Version = Field(description="The version whose pods were read.")
    window_seconds: int = Field(ge=0, description="The window scored.")
    samples: int = Field(ge=0, description="Rows in the window, over all pods read.")
    pods: int = Field(ge=0, description="Pods whose monitor answered.")
    features: list[FeatureDrift] = Field(
        default_factory=list,
        max_length=1000,
        description="Scores of the features with the highest PSI, highest first (at most 20).",
    )
    feature_count: int | None = Field(
        default=None, ge=0, description="Features scored in all (`features` lists the top 20)."
    )
    predictions: FeatureDrift | None = Field(default=None, description="Scores of the outputs.")
    read_at: datetime | None = Field(default=None, strict=False, description="When it was read.")


class ModelDeploymentStatus(ApiModel):
    """Observed state, written by the operator."""

    conditions: Conditions = Field(
        default_factory=list, description="Ready, Reconciling or Stalled, Progressing, Degraded."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this status describes."
    )
    current_version: Version | None = Field(default=None, description="The version being served.")
    current_model: DnsSubdomain | None = Field(
        default=None, description="Name of the Model object being served."
    )
    previous_version: Version | None = Field(
        default=None, description="The version served before, the target of a rollback."
    )
    canary: CanaryStatus | None = Field(default=None, description="Set while a canary runs.")
    replicas: int | None = Field(default=None, ge=0, description="Serving pods.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Ready serving pods.")
    url: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="In-cluster URL of the Service."
    )
    failed_version: Version | None = Field(
        default=None,
        description="The version last rolled back; not tried again until the spec changes.",
    )
    resolved_reason: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="Why the current target version was chosen."
    )
    history: list[RolloutRecord] = Field(
        default_factory=list,
        max_length=HISTORY_LIMIT,
        description="Latest rollouts, newest first.",
    )
    drift: DriftStatus | None = Field(
        default=None, description="Drift of the served version, while it is monitored."
    )


class ModelDeployment(Resource):
    """Serves a Model version with rolling, canary and automatic rollback."""

    rules = (name_rule("ModelDeployment"),)

    kind: Literal["ModelDeployment"] = Field(
        default="ModelDeployment", description="ModelDeployment."
    )
    spec: ModelDeploymentSpec = Field(description="What to serve and how to roll it out.")
    status: ModelDeploymentStatus | None = Field(default=None, description="Observed state.")


MODEL_DEPLOYMENT = KindInfo(
    kind="ModelDeployment",
    plural="modeldeployments",
    short_name="mdep",
    resource=ModelDeployment,
    spec=ModelDeploymentSpec,
    status=ModelDeploymentStatus,
    max_name_length=MAX_NAME_LENGTH,
    printer_columns=(
        PrinterColumn("Model", "string", ".spec.model.name", "The model name."),
        PrinterColumn("Strategy", "string", ".spec.strategy.type", "Rollout strategy."),
        PrinterColumn("Current", "integer", ".status.currentVersion", "The served version."),
        PrinterColumn("Ready-Replicas", "integer", ".status.readyReplicas", "Ready pods."),
        ready_column(),
        PrinterColumn("URL", "string", ".status.url", "In-cluster URL.", priority=1),
        age_column(),
    ),
)
