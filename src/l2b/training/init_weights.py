"""Start a run from weights the user already has (``--init-weights PATH``): a state dict, e.g.
torchvision's ImageNet ResNet-50, loaded into a freshly built model.

The file is read with ``torch.load(weights_only=True)``, so nothing in it runs. Keys in another
library's layout are renamed by the model's own ``translate_state_dict`` hook when it has one
(:class:`l2b.models.ResNet` maps torchvision's ``conv1`` / ``bn1`` / ``layer1``..``layer4`` onto its
``stem`` / ``stages``). The classifier (the model's last ``nn.Linear``) keeps its fresh
initialisation when its shape differs, as it does when the number of classes changes
(1,000 ImageNet classes against 8 skin-lesion ones); any other mismatch, or a tensor the model
needs that the file lacks, is refused with the key and both shapes. Keys the model does not have
are reported, not loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..meta import find_head
from .validation import load_untrusted_torch

__all__ = ["InitReport", "load_init_weights"]

#: Where common checkpoint formats keep the state dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


@dataclass(frozen=True)
class InitReport:
    """What :func:`load_init_weights` did: tensors loaded, classifier tensors left at their fresh
    initialisation (shape or absence), and keys of the file the model does not have."""

    path: str
    loaded: int
    reinitialised: tuple[str, ...]
    unexpected: tuple[str, ...]

    def line(self) -> str:
        text = f"initial weights from {self.path}: {self.loaded} tensors loaded"
        if self.reinitialised:
            text += f"; classifier re-initialised ({', '.join(self.reinitialised)}: another shape or absent)"
        if self.unexpected:
            shown = ", ".join(self.unexpected[:4]) + (" ..." if len(self.unexpected) > 4 else "")
            text += f"; {len(self.unexpected)} keys not in the model ignored ({shown})"
        return text


def _state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and obj[key]:
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise ValueError(
            f"{path}: not a state dict (a mapping of parameter names to tensors), found "
            f"{type(obj).__name__}; save one with torch.save(model.state_dict(), PATH)"
        )
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"{path}: the mapping holds no tensors; save one with torch.save(model.state_dict(), PATH)")
    if all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _classifier_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of the model's classifier: its last ``nn.Linear``, as the head engine
    finds it (none for a model without one)."""
    try:
        name = find_head(model)
    except ValueError:  # no nn.Linear: nothing to re-initialise
        return set()
    prefix = f"{name}." if name else ""
    return {f"{prefix}weight", f"{prefix}bias"}


def load_init_weights(model: nn.Module, path: str | os.PathLike) -> InitReport:
    """Load the state dict at `path` into `model` (in place); see the module docstring.

    Raises
    ------
    FileNotFoundError
        When there is no file at `path`.
    ValueError
        When the file is not a torch state dict, a tensor other than the classifier's has
        another shape than the model's, or tensors the model needs are missing. The message
        names the file, the key and both shapes.
    """
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise FileNotFoundError(f"init_weights {where}: no such file")
    state = _state_dict(load_untrusted_torch(where, what="state dict of initial weights"), where)
    translate = getattr(model, "translate_state_dict", None)
    if callable(translate):
        state = translate(state)
    own = model.state_dict()
    head = _classifier_keys(model)
    cls = type(model).__name__
    for key, value in state.items():
        if key in own and key not in head and value.shape != own[key].shape:
            raise ValueError(
                f"{where}: {key} has shape {tuple(value.shape)} in the file but {tuple(own[key].shape)} in model "
                f"{cls}; the weights are for another architecture or input (e.g. another number of channels)"
            )
    missing = [k for k in own if k not in state and k not in head and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} of model {cls}'s {len(own)} tensors are not in the file (first: "
            f"{', '.join(missing[:3])}); these weights are for another model, choose the model they were saved from"
        )
    reinit = sorted(k for k in head if k not in state or state[k].shape != own[k].shape)
    take = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and k not in reinit}
    model.load_state_dict(take, strict=False)
    unexpected = tuple(sorted(k for k in state if k not in own))
    return InitReport(where, len(take), tuple(reinit), unexpected)
