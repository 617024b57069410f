"""`mlops-operator lineage <model>` and `kubectl mlops lineage <model>`: where a Model came
from and where it runs.

The chain is dataset version -> trigger -> TrainingJob -> Model -> ModelDeployments. It is
built from the objects' spec, status and recorded lineage only (never pod logs), by a pure
function over the objects of the Model's namespace; the command around it reads them with
the official client and prints the chain as text or JSON. Anything since deleted (a
TrainingJob, a Dataset, a ContinuousTraining) still shows, from what the Model recorded,
marked as gone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, TextIO

import urllib3
from kubernetes import client, config
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from mlops_operator import GROUP, VERSION
from mlops_operator.api import APPROVED_LABEL, dataset_object_name
from mlops_operator.api.model import TriggerRecord
from mlops_operator.builders.continuous import CT_LABEL
from mlops_operator.builders.registry import TRIGGER_ANNOTATION, served_by
from mlops_operator.kube import Kube, current_namespace

Body = dict[str, Any]
Role = Literal["stable", "canary", "stale", "missing"]
# In a pod, the namespace of its ServiceAccount; the default of -n there.
# (connect, read) seconds: a command a person waits for must not hang on a dead server.
REQUEST_TIMEOUT = (5, 30)
PLURALS = ("datasets", "trainingjobs", "continuoustrainings", "modeldeployments")


@dataclass(frozen=True)
class DatasetStep:
    """The data the run read, as the Model recorded it, plus the Dataset if it still exists.

    `registered`: read through a Dataset ref (else a plain URI, which has no object).
    `exists`: the Dataset object is still there (None for a plain URI).
    `digest_changed`: a Dataset of that name exists but holds other data (it was deleted and
    registered again), so it is not the data the Model was trained on.
    """

    registered: bool
    name: str | None
    version: int | None
    object_name: str | None
    uri: str | None
    digest: str | None
    exists: bool | None
    digest_changed: bool = False
    format: str | None = None
    rows: int | None = None


@dataclass(frozen=True)
class TriggerStep:
    """The ContinuousTraining trigger that started the run.

    `source`: `lineage` (recorded in the Model) or `trainingJob` (read from the TrainingJob's
    annotation or label, for a Model registered before triggers were recorded).
    """

    continuous_training: str
    type: str | None
    detail: str | None
    source: Literal["lineage", "trainingJob"]
    exists: bool


@dataclass(frozen=True)
class TrainingJobStep:
    """The TrainingJob that produced the Model, as recorded in its lineage.

    `replaced`: a TrainingJob of that name exists but has another uid, so it is a later run
    and the one that produced the Model is gone.
    """

    name: str
    uid: str | None
    exists: bool
    replaced: bool
    phase: str | None
    image: str | None
    code_revision: str | None
    hyperparameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelStep:
    """The Model itself. `approved`: the value of its approval label, None if unlabelled."""

    name: str
    model_name: str | None
    version: int | None
    artifact_uri: str | None
    artifact_digest: str | None
    format: str | None
    key_metric: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    approved: str | None = None


@dataclass(frozen=True)
class DeploymentStep:
    """A ModelDeployment serving the Model, or listed in its status.servedBy.

    `role`: `stable` (its currentModel), `canary` (its canary's version), `stale` (listed
    in servedBy but no longer serving it; `serves` says what it serves now) or `missing`
    (listed in servedBy but not found). `weight`: percentage of its replicas, while a
    canary splits them.
    """

    name: str
    role: Role
    weight: int | None = None
    serves: str | None = None


@dataclass(frozen=True)
class Chain:
    """The whole lineage of one Model; a step is None when nothing was recorded for it."""

    namespace: str | None
    model: ModelStep
    dataset: DatasetStep | None
    trigger: TriggerStep | None
    training_job: TrainingJobStep | None
    deployments: tuple[DeploymentStep, ...] = ()


def resolve_model(models: Sequence[Body], ref: str) -> Body | None:
    """The Model `ref` names: the Model object of that name (`iris-v3`), else the newest
    version of the model of that name (`iris`); None if neither exists."""
    for m in models:
        if m["metadata"]["name"] == ref:
            return m
    versions = [m for m in models if (m.get("spec") or {}).get("modelName") == ref]
    return max(versions, key=lambda m: int(m["spec"].get("version") or 0), default=None)


def build_chain(
    model: Body,
    datasets: Sequence[Body] = (),
    training_jobs: Sequence[Body] = (),
    continuous_trainings: Sequence[Body] = (),
    deployments: Sequence[Body] = (),
) -> Chain:
    """The lineage of `model`, given the other objects of its namespace. Pure."""
    spec = model.get("spec") or {}
    lineage = spec.get("lineage") or {}
    tj_body, tj_step = _training_job(lineage, training_jobs)
    return Chain(
        namespace=model["metadata"].get("namespace"),
        model=_model(model),
        dataset=_dataset(lineage.get("dataset"), datasets),
        trigger=_trigger(lineage.get("trigger"), tj_body, continuous_trainings),
        training_job=tj_step,
        deployments=_deployments(model, deployments),
    )


def _by_name(bodies: Sequence[Body], name: str) -> Body | None:
    return next((b for b in bodies if b["metadata"]["name"] == name), None)


def _model(model: Body) -> ModelStep:
    spec = model.get("spec") or {}
    artifact = spec.get("artifact") or {}
    return ModelStep(
        name=model["metadata"]["name"],
        model_name=spec.get("modelName"),
        version=spec.get("version"),
        artifact_uri=artifact.get("uri"),
        artifact_digest=artifact.get("digest"),
        format=artifact.get("format"),
        key_metric=spec.get("keyMetric"),
        metrics=dict(spec.get("metrics") or {}),
        approved=(model["metadata"].get("labels") or {}).get(APPROVED_LABEL),
    )


def _dataset(recorded: Body | None, datasets: Sequence[Body]) -> DatasetStep | None:
    if not recorded:
        return None
    name, version = recorded.get("name"), recorded.get("version")
    if name is None or version is None:
        return DatasetStep(
            registered=False,
            name=None,
            version=None,
            object_name=None,
            uri=recorded.get("uri"),
            digest=recorded.get("digest"),
            exists=None,
        )
    object_name = dataset_object_name(name, int(version))
    body = _by_name(datasets, object_name)
    ds_spec = (body or {}).get("spec") or {}
    digest = recorded.get("digest")
    return DatasetStep(
        registered=True,
        name=name,
        version=int(version),
        object_name=object_name,
        uri=recorded.get("uri") or ds_spec.get("uri"),
        digest=digest or ds_spec.get("digest"),
        exists=body is not None,
        # Versions are immutable, so a differing digest means deleted and registered again.
        digest_changed=bool(digest and ds_spec.get("digest") and ds_spec["digest"] != digest),
        format=ds_spec.get("format"),
        rows=ds_spec.get("rows"),
    )


def _training_job(
    lineage: Body, training_jobs: Sequence[Body]
) -> tuple[Body | None, TrainingJobStep | None]:
    """The TrainingJob object (only if it is the very run, by uid) and the step."""
    ref = lineage.get("trainingJob")
    if not ref:
        return None, None
    name, uid = ref["name"], ref.get("uid")
    body = _by_name(training_jobs, name)
    # A name can be reused by a later run; only the uid says it is the same one.
    replaced = body is not None and uid is not None and body["metadata"].get("uid") != uid
    if replaced:
        body = None
    step = TrainingJobStep(
        name=name,
        uid=uid,
        exists=body is not None,
        replaced=replaced,
        phase=((body or {}).get("status") or {}).get("phase"),
        image=lineage.get("image"),
        code_revision=lineage.get("codeRevision"),
        hyperparameters=dict(lineage.get("hyperparameters") or {}),
    )
    return body, step


def _trigger(
    recorded: Body | None, tj: Body | None, continuous_trainings: Sequence[Body]
) -> TriggerStep | None:
    if recorded:
        ct, kind, detail = (
            recorded["continuousTraining"],
            recorded.get("type"),
            recorded.get("detail"),
        )
        source: Literal["lineage", "trainingJob"] = "lineage"
    elif tj is not None and (found := _trigger_of(tj)) is not None:
        ct, kind, detail = found
        source = "trainingJob"
    else:
        return None
    return TriggerStep(
        continuous_training=ct,
        type=kind,
        detail=detail,
        source=source,
        exists=_by_name(continuous_trainings, ct) is not None,
    )


def _trigger_of(tj: Body) -> tuple[str, str | None, str | None] | None:
    """What a TrainingJob says started it: its trigger annotation (as registry.trigger_of
    reads it), else just the ContinuousTraining its label names."""
    meta = tj["metadata"]
    raw = (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION)
    if raw:
        try:
            record = TriggerRecord.model_validate_json(raw)
        except ValidationError:
            pass
        else:
            return record.continuous_training, record.type, record.detail
    ct = (meta.get("labels") or {}).get(CT_LABEL)
    return (ct, None, None) if ct else None


def _deployments(model: Body, deployments: Sequence[Body]) -> tuple[DeploymentStep, ...]:
    name = model["metadata"]["name"]
    # status.servedBy may lag the ModelDeployments; what they serve now counts too.
    listed = set((model.get("status") or {}).get("servedBy") or [])
    names = listed | set(served_by(list(deployments), name))
    return tuple(_deployment(n, _by_name(deployments, n), name) for n in sorted(names))


def _deployment(name: str, md: Body | None, model: str) -> DeploymentStep:
    if md is None:
        return DeploymentStep(name=name, role="missing")
    status = md.get("status") or {}
    canary = status.get("canary") or {}
    serving = name in served_by([md], model)  # not being deleted, and serving it
    if serving and status.get("currentModel") == model:
        weight = 100 - int(canary["weight"]) if canary.get("weight") is not None else None
        return DeploymentStep(name=name, role="stable", weight=weight)
    if serving:
        return DeploymentStep(name=name, role="canary", weight=canary.get("weight"))
    return DeploymentStep(name=name, role="stale", serves=status.get("currentModel"))


# --- rendering -----------------------------------------------------------------------------


def to_dict(chain: Chain) -> dict[str, Any]:
    """The chain as JSON-ready data, with camelCase keys as in the objects."""
    result = _plain(chain)
    assert isinstance(result, dict)
    return result


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {to_camel(f.name): _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value  # dict values (metrics, hyperparameters) keep their own keys


def render_json(chain: Chain) -> str:
    return json.dumps(to_dict(chain), indent=2) + "\n"


def _short(digest: str | None) -> str:
    """A digest cut to 12 hex digits, as `docker images` shows them; JSON has it whole."""
    if not digest:
        return "no digest"
    algo, _, hexdigits = digest.partition(":")
    return f"{algo}:{hexdigits[:12]}…" if len(hexdigits) > 12 else digest


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _value(text: str) -> str:
    # Quoted when it would not read as one word, so `k=v` pairs stay unambiguous.
    return text if text and not any(c.isspace() or c in "\"'" for c in text) else json.dumps(text)


def _dataset_line(ds: DatasetStep | None) -> str:
    if ds is None:
        return "none recorded"
    parts = [ds.object_name] if ds.object_name else []
    parts += [ds.uri or "no uri", _short(ds.digest)]
    if not ds.registered:
        parts.append("(plain URI, not a registered Dataset)")
    elif not ds.exists:
        parts.append("(Dataset deleted)")
    elif ds.digest_changed:
        parts.append("(the Dataset of that name now holds other data)")
    else:
        extra = [x for x in (ds.format, f"{ds.rows} rows" if ds.rows is not None else None) if x]
        if extra:
            parts.append(", ".join(extra))
    return "  ".join(parts)


def _trigger_line(trigger: TriggerStep | None, by_hand: bool) -> str:
    if trigger is None:
        return "none (Model registered by hand)" if by_hand else "none (started by hand)"
    parts = [f"continuoustraining/{trigger.continuous_training}", trigger.type or "unknown"]
    if trigger.detail:
        parts.append(_one_line(trigger.detail))
    if not trigger.exists:
        parts.append("(ContinuousTraining deleted)")
    return "  ".join(parts)


def _training_job_line(tj: TrainingJobStep | None) -> str:
    if tj is None:
        return "none (Model registered by hand)"
    parts = [tj.name]
    if tj.replaced:
        parts.append(f"(deleted; the TrainingJob of that name is a later run, uid {tj.uid})")
    elif not tj.exists:
        parts.append(f"(deleted, uid {tj.uid})" if tj.uid else "(deleted)")
    elif tj.phase:
        parts.append(tj.phase)
    if tj.image:
        parts.append(f"image {tj.image}")
    if tj.code_revision:
        parts.append(f"code {_value(tj.code_revision)}")
    if tj.hyperparameters:
        pairs = " ".join(f"{k}={_value(v)}" for k, v in sorted(tj.hyperparameters.items()))
        parts.append(f"hyperparameters {pairs}")
    return "  ".join(parts)


def _model_line(m: ModelStep) -> str:
    parts = [m.name]
    shown = {m.key_metric: m.metrics[m.key_metric]} if m.key_metric in m.metrics else m.metrics
    if shown:
        parts.append(" ".join(f"{k}={v:g}" for k, v in sorted(shown.items())))
    else:
        parts.append("no metrics")
    if m.approved == "true":
        parts.append("approved")
    elif m.approved is None:
        parts.append("not approved")
    else:
        parts.append(f"{APPROVED_LABEL}={_value(m.approved)}")
    return "  ".join(parts)


def _deployment_line(d: DeploymentStep) -> str:
    if d.role == "missing":
        return f"{d.name}  (in the Model's servedBy, but not found)"
    if d.role == "stale":
        now = f"serves {d.serves}" if d.serves else "serves nothing"
        return f"{d.name}  (in the Model's servedBy, but now {now})"
    weight = f" {d.weight}%" if d.weight is not None else ""
    return f"{d.name}  {d.role}{weight}"


def render_text(chain: Chain) -> str:
    """The chain for people: a header, then one indented step per line, data first."""
    where = f" (namespace {chain.namespace})" if chain.namespace else ""
    by_hand = chain.training_job is None
    steps = [
        ("dataset", _dataset_line(chain.dataset)),
        ("trigger", _trigger_line(chain.trigger, by_hand)),
        ("trainingjob", _training_job_line(chain.training_job)),
        ("model", _model_line(chain.model)),
    ]
    steps += [("deployment", _deployment_line(d)) for d in chain.deployments]
    if not chain.deployments:
        steps.append(("deployment", "none serving it"))
    width = max(len(label) for label, _ in steps)
    lines = [f"lineage of Model {chain.model.name}{where}"]
    lines += [f"  {label.ljust(width)}  {text}" for label, text in steps]
    return "\n".join(lines) + "\n"


# --- the command ---------------------------------------------------------------------------


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the `lineage` subcommand; its handler (`args.func`) returns the exit code."""
    parser = subparsers.add_parser(
        "lineage",
        help="show where a Model came from (dataset, trigger, TrainingJob) and where it runs",
        description="Show a Model's lineage: dataset version -> trigger -> TrainingJob ->"
        " Model -> ModelDeployments, from the objects' spec, status and recorded lineage.",
    )
    parser.add_argument(
        "model", help="a Model object name (iris-v3), or a model name (iris) for its newest version"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="namespace of the Model (default: the kubeconfig context's, else default; in a"
        " pod, the pod's)",
    )
    parser.add_argument(
        "-o", "--output", choices=["text", "json"], default="text", help="default: text"
    )
    parser.set_defaults(func=_lineage)
    return parser


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """The `kubectl-mlops` plugin: `kubectl mlops lineage <model> [-n ns] [-o json]`."""
    parser = argparse.ArgumentParser(
        prog="kubectl mlops", description="mlops-operator commands as a kubectl plugin."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def _lineage(args: argparse.Namespace) -> int:
    try:
        api, namespace = _connect()
    except config.ConfigException as err:
        print(f"error: cannot connect to Kubernetes: {err}", file=sys.stderr)
        return 1
    return show(api, args.model, args.namespace or namespace, args.output)


def _connect() -> tuple[Any, str]:
    """The client (in a pod its ServiceAccount, else the kubeconfig) and the default
    namespace."""
    return client.CustomObjectsApi(Kube.api_client()), current_namespace()


def show(
    api: Any,
    ref: str,
    namespace: str,
    output: str = "text",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Read the objects through `api` (a CustomObjectsApi), print the lineage of Model
    `ref` to `out`; returns the exit code, 1 with one line on `err` if it cannot."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        model = _find_model(api, namespace, ref)
        if model is None:
            print(
                f"error: no Model {ref!r} in namespace {namespace} (neither a Model object"
                " nor a model name with versions)",
                file=err,
            )
            return 1
        found = {plural: _list(api, namespace, plural) for plural in PLURALS}
    except client.ApiException as e:
        print(f"error: the API server refused: {e.status} {e.reason}", file=err)
        return 1
    except urllib3.exceptions.HTTPError as e:
        print(f"error: cannot reach the API server: {e}", file=err)
        return 1
    chain = build_chain(
        model,
        datasets=found["datasets"],
        training_jobs=found["trainingjobs"],
        continuous_trainings=found["continuoustrainings"],
        deployments=found["modeldeployments"],
    )
    out.write(render_json(chain) if output == "json" else render_text(chain))
    return 0


def _find_model(api: Any, namespace: str, ref: str) -> Body | None:
    try:
        body: Body = api.get_namespaced_custom_object(
            group=GROUP,
            version=VERSION,
            namespace=namespace,
            plural="models",
            name=ref,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return body
    except client.ApiException as e:
        if e.status != 404:
            raise
    # Not an object name: a model name, whose newest version is meant.
    return resolve_model(_list(api, namespace, "models"), ref)


def _list(api: Any, namespace: str, plural: str) -> list[Body]:
    try:
        result = api.list_namespaced_custom_object(
            group=GROUP,
            version=VERSION,
            namespace=namespace,
            plural=plural,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except client.ApiException as e:
        # A kind whose CRD is not installed (an older release): there are none of it.
        if e.status == 404:
            return []
        raise
    items: list[Body] = result.get("items") or []
    return items
