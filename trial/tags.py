"""The MLflow tag names trial writes and reads, in one Ray-free place."""
from __future__ import annotations

ROLE_TAG = "trial.role"
"""`sweep` on the parent run, `trial` on each child."""
PARENT_TAG = "mlflow.parentRunId"
"""MLflow's own nesting tag: the UI shows a child under this run."""
TRIAL_ID_TAG = "trial.trial_id"
BEST_TRIAL_TAG = "trial.best_trial_id"
STATUS_TAG = "trial.status"
"""completed, pruned or error."""
PRUNED_TAG = "trial.pruned"
ERROR_TAG = "trial.error"
