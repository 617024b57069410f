"""Labels and owner references every child object carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mlops_operator.api import API_VERSION
from mlops_operator.api.common import RESERVED_PREFIX, ObjectMeta

MANAGED_BY = "mlops-operator"


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """Makes the parent the controller of a child: GC deletes the child with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_labels(kind: str, name: str, **extra: str) -> dict[str, str]:
    """`mlops.seed.dev/<kind>=<name>` finds children; app.kubernetes.io/* explain them."""
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "mlops",
        f"{RESERVED_PREFIX}{kind.lower()}": name,
        **{f"{RESERVED_PREFIX}{key.replace('_', '-')}": value for key, value in extra.items()},
    }


def name_and_uid(meta: ObjectMeta) -> tuple[str, str]:
    """Every object read from the API server has both; builders rely on it."""
    if not meta.name or not meta.uid:
        raise ValueError("expected an object read from the API server (with name and uid)")
    return meta.name, meta.uid


def owned_by(child: dict[str, Any], uid: str) -> bool:
    """Whether `child` is controlled by the object with this uid."""
    refs = child.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def not_ours(kind: str, existing: dict[str, Any], owner_kind: str, owner: str) -> str:
    """Why a child's name cannot be used: someone else's object holds it (who wrote it, as
    its managedFields say, helps find whose it is)."""
    meta = existing.get("metadata") or {}
    managers = sorted({f.get("manager") or "?" for f in meta.get("managedFields") or []})
    controller = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    whose = (
        f"controlled by {controller.get('kind')} {controller.get('name')}"
        if controller
        else "controlled by nothing"
    )
    written = f", written by {some_names(managers, 3)}" if managers else ""
    return (
        f"{kind} {meta.get('name')} already exists and is not this {owner_kind}'s ({whose}"
        f"{written}); nothing of it is changed. Delete or rename it, or rename {owner_kind}"
        f" {owner}"
    )


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about an object: builders decide, controllers post."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def some_names(names: list[str], shown: int = 5) -> str:
    """At most `shown` names for a message, and how many more: a message has a length limit,
    and the list may be of any length."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
