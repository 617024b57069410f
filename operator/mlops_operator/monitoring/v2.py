"""Open Inference Protocol (V2) bodies as columns of the reference profile.

A request's inputs map to the profile's features in one of two ways, the two MLServer and
KServe clients send: one tensor of shape [rows, features] whose columns are the features in
order (the numpy codec), or one tensor per feature named after it, of shape [rows] or
[rows, 1] (the pandas codec). Anything else is not ours to read: the caller passes it on
and counts it by the reason here. The response's first output, if it has one value per row,
gives the predictions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

# Why a body could not be read; the monitor's counter label.
NOT_JSON = "not-json"
NO_INPUTS = "no-inputs"
BAD_SHAPE = "bad-shape"
UNMAPPED = "unmapped"
REJECTED = "rejected"  # the runtime answered an error: counted, not binned
TOO_LARGE = "too-large"  # the body or the answer was over the binning cap
BUSY = "busy"  # too many bodies were already waiting to be binned
REASONS = (NOT_JSON, NO_INPUTS, BAD_SHAPE, UNMAPPED, REJECTED, TOO_LARGE, BUSY)


class Unreadable(ValueError):
    """The body is not a V2 tensor payload the profile can map; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    data: list[Any]  # flattened, row-major


def infer_path(path: str) -> bool:
    """Whether `path` is a V2 inference call: /v2/models/NAME[/versions/V]/infer."""
    parts = path.strip("/").split("/")
    return (
        len(parts) in (4, 6)
        and parts[:2] == ["v2", "models"]
        and parts[-1] == "infer"
        and (len(parts) == 4 or parts[3] == "versions")
    )


def request_columns(body: bytes, features: list[str]) -> list[list[Any]]:
    """The request's values per feature, in the order of `features`."""
    tensors = _tensors(body, "inputs")
    if len(tensors) == 1 and len(tensors[0].shape) == 2 and tensors[0].shape[1] == len(features):
        width = tensors[0].shape[1]
        data = tensors[0].data
        return [data[j::width] for j in range(width)]
    if len(tensors) == 1 and len(features) == 1 and _rows(tensors[0]) is not None:
        return [tensors[0].data]
    by_name = {t.name: t for t in tensors}
    missing = [f for f in features if f not in by_name]
    if missing:
        shapes = ", ".join(f"{t.name}{list(t.shape)}" for t in tensors)
        raise Unreadable(UNMAPPED, f"inputs {shapes} map to no feature of {missing[:3]}")
    counts = {_rows(by_name[f]) for f in features}
    if len(counts) != 1 or None in counts:
        raise Unreadable(BAD_SHAPE, "inputs named after features have different row counts")
    return [by_name[f].data for f in features]


def response_predictions(body: bytes, rows: int) -> list[Any] | None:
    """The first output's values when it has one per row (a class or a score), else None."""
    try:
        outputs = _tensors(body, "outputs")
    except Unreadable:
        return None
    first = outputs[0]
    return first.data if _rows(first) == rows else None


def _rows(tensor: Tensor) -> int | None:
    """Rows of a per-feature tensor: shape [rows] or [rows, 1]."""
    if len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1):
        return tensor.shape[0]
    return None


def _tensors(body: bytes, key: str) -> list[Tensor]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Unreadable(NOT_JSON, str(err)) from None
    raw = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(raw, list) or not raw:
        raise Unreadable(NO_INPUTS, f"no {key!r} list")
    tensors = []
    for item in raw:
        if not isinstance(item, dict):
            raise Unreadable(NO_INPUTS, f"an item of {key!r} is not an object")
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise Unreadable(BAD_SHAPE, f"{item.get('name')!r}: shape {shape!r}")
        data = _flatten(item.get("data"))
        if len(data) != math.prod(shape):
            raise Unreadable(BAD_SHAPE, f"{item.get('name')!r}: {len(data)} values, shape {shape}")
        tensors.append(Tensor(str(item.get("name", "")), tuple(shape), data))
    return tensors


def _flatten(data: Any) -> list[Any]:
    """V2 allows `data` flat or nested by the shape; both flatten to row-major order."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat
