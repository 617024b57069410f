"""mlops-operator: TrainingJob, Model and ModelDeployment reconciled by kopf."""

GROUP = "mlops.seed.dev"
VERSION = "v1alpha1"
