"""The code an MLflow model saved by trial runs when it loads (MLflow's models-from-code):
the model is this class and its artifacts, never a pickled object."""
from mlflow.models import set_model

from trial.model import TrialPyfunc

set_model(TrialPyfunc())
