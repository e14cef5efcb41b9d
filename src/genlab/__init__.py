"""genlab: train, sample and evaluate every family of deep generative model through one interface."""

from genlab.errors import UserError
from genlab.model import Context, Model, ModelConfig, Phase, create, data_fields, register_model

from genlab import autoencoders, diffusion, flows, gan, vision  # noqa: E402,F401  (registers the families' models)

__all__ = ["Context", "Model", "ModelConfig", "Phase", "UserError", "create", "data_fields", "register_model"]
__version__ = "0.1.0"
