"""Classifier models, built by name through a registry.

Every model maps a batch of shape ``(N, *in_shape)`` to logits of shape ``(N, num_classes)`` and
runs under ``torch.func.functional_call`` and forward-mode AD (``torch.autograd.forward_ad``).

Examples
--------
>>> from l2b.models import create_model, list_models
>>> model = create_model("preact_resnet18", num_classes=10, in_shape=(3, 32, 32))
"""

from __future__ import annotations

# Importing the model modules registers their factories.
from . import cnn, mlp, resnet, unet  # noqa: F401
from .cnn import SmallCNN
from .mlp import MLP
from .registry import MODELS, create_model, list_models, model_options, register_model
from .resnet import PreActResNet, ResNet
from .unet import UNet, UNetPlusPlus

__all__ = [
    "MODELS",
    "MLP",
    "PreActResNet",
    "ResNet",
    "SmallCNN",
    "UNet",
    "UNetPlusPlus",
    "create_model",
    "list_models",
    "model_options",
    "register_model",
]
