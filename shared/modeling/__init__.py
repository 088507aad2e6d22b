"""Model loading: one code path for Hugging Face ids, local paths and the built-in offline models."""

from shared.modeling.registry import BUILTIN_MODELS, models_dir, resolve_model

__all__ = ["BUILTIN_MODELS", "models_dir", "resolve_model"]
