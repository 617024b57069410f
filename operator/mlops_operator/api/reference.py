"""The reference profile: what a model's training data looked like, kept beside its artifact.

The SDK's `profile()` makes it at training time and `report(reference=...)` writes it as
`reference.json` next to the artifact; the Model records where it is and its digest
(`spec.artifact.reference`); the monitor in each serving pod bins live requests against its
edges. Both sides read this one definition. No payload is kept: only bin edges and counts.

Binning, the same on both sides: a numeric value x falls in bin i where
`edges[i-1] < x <= edges[i]` (bin 0 is everything up to `edges[0]`, the last bin everything
above the last edge), which is `bisect_left(edges, x)` and numpy's `searchsorted(side="left")`.
A category is its `category_key`; one not in `categories` counts in the last bin ("other").
A value that is missing, not finite or of the wrong type counts as `missing`, in no bin.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from mlops_operator.api.common import ApiModel, Digest, Uri

# The file name beside the artifact.
REFERENCE_FILE = "reference.json"
MAX_BINS = 100
MAX_FEATURES = 1000

FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Count = Annotated[int, Field(ge=0)]


class ReferenceFile(ApiModel):
    """Where a model's reference profile is: the training report says it, the Model keeps it."""

    uri: Uri = Field(description="The reference profile, `reference.json` beside the artifact.")
    digest: Digest = Field(description="Content digest of that file, `sha256:<hex>`.")


def category_key(value: object) -> str | None:
    """The category a value counts as: its text; numbers that are whole count as integers
    (so a prediction of 1.0 and one of 1 are the same class). None when it cannot be one."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return None


class NumericFeature(ApiModel):
    """A number, binned at its training quantiles."""

    kind: Literal["numeric"] = "numeric"
    name: FeatureName
    edges: list[float] = Field(max_length=MAX_BINS - 1, description="Inner bin edges, ascending.")
    counts: list[Count] = Field(max_length=MAX_BINS, description="Rows per bin: len(edges) + 1.")
    missing: Count = 0

    @model_validator(mode="after")
    def _consistent(self) -> NumericFeature:
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError(f"{self.name}: counts needs len(edges) + 1 = {len(self.edges) + 1}")
        if any(not math.isfinite(e) for e in self.edges):
            raise ValueError(f"{self.name}: edges must be finite")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"{self.name}: edges must be strictly ascending")
        return self

    def bin(self, value: object) -> int | None:
        """The bin of `value`, or None when it is missing or not a finite number."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value):
            return None
        return bisect_left(self.edges, value)


class CategoricalFeature(ApiModel):
    """A category, counted by value; the last bin counts every value not listed."""

    kind: Literal["categorical"] = "categorical"
    name: FeatureName
    categories: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        max_length=MAX_BINS - 1, description="The most frequent values in training."
    )
    counts: list[Count] = Field(
        max_length=MAX_BINS, description="Rows per category, then the rest: len(categories) + 1."
    )
    missing: Count = 0

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalFeature:
        if len(self.counts) != len(self.categories) + 1:
            raise ValueError(
                f"{self.name}: counts needs len(categories) + 1 = {len(self.categories) + 1}"
            )
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"{self.name}: categories must be unique")
        return self

    def bin(self, value: object) -> int | None:
        key = category_key(value)
        if key is None:
            return None
        try:
            return self.categories.index(key)
        except ValueError:
            return len(self.categories)


Feature = Annotated[NumericFeature | CategoricalFeature, Field(discriminator="kind")]


class ReferenceProfile(ApiModel):
    """Per input feature (in the order of the model's input columns) and for the predictions:
    how the training data was distributed."""

    format: Literal[1] = 1
    rows: Count = Field(description="Rows profiled.")
    features: list[Feature] = Field(min_length=1, max_length=MAX_FEATURES)
    predictions: Feature | None = Field(
        default=None, description="The model's predictions on those rows."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ReferenceProfile:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        return self
