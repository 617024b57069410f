"""API types: pydantic models of spec and status, the single source of truth.

Imports nothing else of this package (checked by import-linter) except the
GROUP and VERSION constants of the package root.
"""

from mlops_operator.api.common import (
    API_VERSION,
    ApiModel,
    Condition,
    KindInfo,
    PrinterColumn,
    Rule,
    TransitionRule,
    cel_regex,
    cel_validation,
    describe_errors,
)
from mlops_operator.api.continuoustraining import (
    CONTINUOUS_TRAINING,
    ContinuousTraining,
    ContinuousTrainingSpec,
    ContinuousTrainingStatus,
)
from mlops_operator.api.dataset import (
    DATASET,
    Dataset,
    DatasetSpec,
    DatasetStatus,
    dataset_object_name,
)
from mlops_operator.api.model import (
    APPROVED_LABEL,
    MODEL,
    Model,
    ModelSpec,
    ModelStatus,
    model_object_name,
)
from mlops_operator.api.modeldeployment import (
    MODEL_DEPLOYMENT,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from mlops_operator.api.trainingjob import (
    TRAINING_JOB,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
)

KINDS: tuple[KindInfo, ...] = (
    TRAINING_JOB,
    MODEL,
    MODEL_DEPLOYMENT,
    DATASET,
    CONTINUOUS_TRAINING,
)

__all__ = [
    "API_VERSION",
    "APPROVED_LABEL",
    "CONTINUOUS_TRAINING",
    "DATASET",
    "KINDS",
    "MODEL",
    "MODEL_DEPLOYMENT",
    "TRAINING_JOB",
    "ApiModel",
    "Condition",
    "ContinuousTraining",
    "ContinuousTrainingSpec",
    "ContinuousTrainingStatus",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "KindInfo",
    "Model",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelSpec",
    "ModelStatus",
    "PrinterColumn",
    "Rule",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "TransitionRule",
    "cel_regex",
    "cel_validation",
    "dataset_object_name",
    "describe_errors",
    "model_object_name",
]
