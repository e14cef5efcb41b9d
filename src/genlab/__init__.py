"""genlab: train, sample and evaluate every family of deep generative model through one interface."""

from genlab.errors import UserError
from genlab.model import GenerativeModel, ModelConfig, Phase, create

from genlab import autoencoders, diffusion  # noqa: E402,F401  (registers the families' models)

__all__ = ["GenerativeModel", "ModelConfig", "Phase", "UserError", "create"]
__version__ = "0.1.0"
