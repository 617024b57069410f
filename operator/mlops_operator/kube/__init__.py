"""The one place that talks to the API server: the client (client.py), its read cache
(cache.py), what its errors mean (errors.py) and its clock (clock.py)."""

from mlops_operator.kube.cache import Body, Cache
from mlops_operator.kube.client import (
    CALL,
    KUEUE_JOB_UID_LABEL,
    POOL_SIZE,
    RETRYING,
    Kube,
    current_namespace,
)
from mlops_operator.kube.errors import AlreadyExists, Conflict, Refused, retry_after

__all__ = [
    "CALL",
    "KUEUE_JOB_UID_LABEL",
    "POOL_SIZE",
    "RETRYING",
    "AlreadyExists",
    "Body",
    "Cache",
    "Conflict",
    "Kube",
    "Refused",
    "current_namespace",
    "retry_after",
]
