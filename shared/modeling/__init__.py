"""Model loading: one code path for Hugging Face ids, local paths and the built-in offline models."""

from shared.modeling.hub import ModelError
from shared.modeling.registry import BUILTIN_MODELS, check_model, local_model, models_dir, resolve_model

__all__ = ["BUILTIN_MODELS", "ModelError", "check_model", "local_model", "models_dir", "resolve_model"]
