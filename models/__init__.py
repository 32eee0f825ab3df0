"""Torch modules: the LIF neuron and the seed architectures (no deployment code)."""

from models.conv_snn import ConvSNN
from models.fc_snn import FCSNN
from models.neuron import LIF, validate_beta
from models.registry import MODELS, build_model, default_config

__all__ = ["LIF", "FCSNN", "ConvSNN", "MODELS", "build_model", "default_config", "validate_beta"]
