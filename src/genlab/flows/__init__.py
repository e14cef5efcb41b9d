"""Normalizing flows: invertible layers with log-determinants, ``Flow(base, layers)``, and the
registered ``realnvp``, ``glow``, ``maf`` and ``nsf`` models."""

from genlab.flows.flow import Flow, FlowLayer, Sequence, StandardNormal
from genlab.flows.model import FlowConfig, FlowModel

__all__ = ["Flow", "FlowConfig", "FlowLayer", "FlowModel", "Sequence", "StandardNormal"]
