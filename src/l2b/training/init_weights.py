"""Start a run from weights the user already has (``--init-weights PATH``): a state dict, e.g.
torchvision's ImageNet ResNet-50 or a Hugging Face / timm ``.safetensors`` file, loaded into a
freshly built model.

Two formats are read, and nothing in either runs code: a file named ``*.safetensors`` with
:func:`safetensors.torch.load_file` (the format Hugging Face and timm weights ship in), anything
else with ``torch.load(weights_only=True)``. The format is told by the suffix and checked against
the file's first bytes (a safetensors file starts with the 8-byte little-endian length of a JSON
header), so a safetensors file under another name, or a torch file named ``.safetensors``, is
refused with the file and what it holds named, and a truncated or corrupt one with the file named.
Keys in another library's layout are renamed by the model's own ``translate_state_dict`` hook when
it has one (:class:`l2b.models.ResNet` maps torchvision's ``conv1`` / ``bn1`` /
``layer1``..``layer4`` onto its ``stem`` / ``stages``). The classifier (the model's last
``nn.Linear``) keeps its fresh initialisation when its shape differs, as it does when the number of
classes changes (1,000 ImageNet classes against 8 skin-lesion ones); any other mismatch, or a
tensor the model needs that the file lacks, is refused with the key and both shapes. Keys the
model does not have are reported, not loaded.

:func:`save_safetensors` writes a state dict in that format, atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..meta import find_head
from ..untrusted import load_untrusted_torch

__all__ = ["InitReport", "load_init_weights", "save_safetensors"]

#: Where common checkpoint formats keep the state dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")

# The suffix that selects the safetensors reader (compared case-insensitively).
_SAFETENSORS_SUFFIX = ".safetensors"
# The safetensors library refuses headers above 100 MB; a length beyond it is not a header.
_MAX_SAFETENSORS_HEADER = 100_000_000
_TORCH_ADVICE = "save one with torch.save(model.state_dict(), PATH)"
_SAFETENSORS_ADVICE = "save one with l2b.training.init_weights.save_safetensors(model.state_dict(), PATH)"


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


def _state_dict(obj: Any, path: str, advice: str = _TORCH_ADVICE) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and obj[key]:
                obj = obj[key]
                break
    if isinstance(obj, dict) and not obj:
        raise ValueError(f"{path}: the file holds no tensors; {advice}")
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError(
            f"{path}: not a state dict (a mapping of parameter names to tensors), found {type(obj).__name__}; {advice}"
        )
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"{path}: the mapping holds no tensors; {advice}")
    if all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _contents(path: str) -> str:
    """What the file's first bytes say it is: ``"safetensors"`` (an 8-byte little-endian header
    length in range, then the JSON header's ``{``), ``"zip"`` (``torch.save``'s format),
    ``"pickle"`` (the legacy ``torch.save`` format, a pickle) or ``"unknown"``."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= _MAX_SAFETENSORS_HEADER and head[8:] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":  # the PROTO opcode that starts every pickle of protocol 2 or later
        return "pickle"
    return "unknown"


_HOLDS = {"zip": "a zip archive (the format of torch.save)", "pickle": "a pickle (the legacy torch.save format)"}


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The state dict in the file at `path`, read by the reader its suffix names once its first
    bytes agree; nothing in the file runs."""
    kind = _contents(path)
    if not path.lower().endswith(_SAFETENSORS_SUFFIX):
        if kind == "safetensors":
            raise ValueError(
                f"{path}: holds safetensors data (its first bytes are a safetensors header) but is not named "
                f"*{_SAFETENSORS_SUFFIX}; rename it to {Path(path).stem}{_SAFETENSORS_SUFFIX} so that it is read as one"
            )
        if kind == "unknown":  # an image, a text file ...: torch.load's unpickler message would only confuse
            raise ValueError(
                f"{path}: not a weights file: it starts with neither a zip archive nor a pickle (torch.save's "
                "formats) nor a safetensors header; give a state dict saved with torch.save or a .safetensors file"
            )
        return _state_dict(load_untrusted_torch(path, what="state dict of initial weights"), path)
    if kind in _HOLDS:
        raise ValueError(
            f"{path}: named *{_SAFETENSORS_SUFFIX} but holds {_HOLDS[kind]}, not safetensors data; rename it to "
            f"{Path(path).stem}.pt so that it is read with torch.load(weights_only=True)"
        )
    if kind != "safetensors":
        raise ValueError(
            f"{path}: not a safetensors file: it does not start with a safetensors header (an 8-byte header "
            "length and a JSON header); it is corrupt, truncated or another format; use another copy of it"
        )
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(
            f"{path}: reading safetensors files needs the safetensors package: pip install safetensors"
        ) from None
    try:
        state = load_file(path, device="cpu")
    except Exception as err:  # noqa: BLE001 - the reader's SafetensorError on a torn or foreign file
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(
            f"{path}: this safetensors file is truncated or corrupt ({reason}); use another copy of it"
        ) from None
    return _state_dict(state, path, advice=_SAFETENSORS_ADVICE)


def _classifier_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of the model's classifier: its last ``nn.Linear``, as the head engine
    finds it (none for a model without one)."""
    try:
        name = find_head(model)
    except ValueError:  # no nn.Linear: nothing to re-initialise
        return set()
    prefix = f"{name}." if name else ""
    return {f"{prefix}weight", f"{prefix}bias"}


def _written_for(path: str) -> str:
    """What a safetensors file written by ``l2b pretrain`` says it was made for (its header's
    ``l2b_model`` / ``l2b_model_options``), as the options that rebuild that model, to end a
    mismatch message with; "" for any other file."""
    if not path.lower().endswith(_SAFETENSORS_SUFFIX):
        return ""
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        model, options = meta["l2b_model"], json.loads(meta.get("l2b_model_options", "{}"))
    except Exception:  # noqa: BLE001 - no l2b header, or an unreadable one: no hint
        return ""
    from ..models import MODELS

    declared = {o.name: o for o in MODELS.options(model)} if model in MODELS else {}
    flags = [f"--model {model}"]
    for name, value in sorted(options.items()):
        # the option's own flag (its config key), as `l2b train --help` lists it
        flag = declared[name].flag if name in declared else "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, (list, tuple)):
            flags.append(f"{flag} {' '.join(map(str, value))}")
        else:
            flags.append(f"{flag} {value}")
    return (
        f"; l2b pretrain wrote it for {' '.join(flags)} on its own images: train with the same model, options "
        "and image size"
    )


def load_init_weights(model: nn.Module, path: str | os.PathLike) -> InitReport:
    """Load the state dict at `path` into `model` (in place); see the module docstring.

    `path` is a ``.safetensors`` file or a torch file (``torch.save(model.state_dict(), PATH)``,
    possibly wrapped in a checkpoint dict under ``state_dict`` / ``model`` / ...). Tensors are
    cast to the dtype of the model's own (bfloat16 or float16 weights load into a float32 model).

    Raises
    ------
    FileNotFoundError
        When there is no file at `path`.
    ValueError
        When the file is not a state dict in either format, its suffix and its contents disagree
        (safetensors data in a file not named ``.safetensors``, or a torch file named so), it is
        truncated or corrupt, a tensor other than the classifier's has another shape than the
        model's, or tensors the model needs are missing. The message names the file, and the key
        and both shapes where one is at fault.
    """
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise FileNotFoundError(f"init_weights {where}: no such file")
    state = _read_state_dict(where)
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
                f"{_written_for(where)}"
            )
    missing = [k for k in own if k not in state and k not in head and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} of model {cls}'s {len(own)} tensors are not in the file (first: "
            f"{', '.join(missing[:3])}); these weights are for another model, choose the model they were saved from"
            f"{_written_for(where)}"
        )
    reinit = sorted(k for k in head if k not in state or state[k].shape != own[k].shape)
    take = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and k not in reinit}
    model.load_state_dict(take, strict=False)
    unexpected = tuple(sorted(k for k in state if k not in own))
    return InitReport(where, len(take), tuple(reinit), unexpected)


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write `state_dict` to `path` as a safetensors file, atomically, and return the path.

    Every tensor is written from the CPU, contiguous, with its dtype and shape (0-d tensors such
    as BatchNorm's ``num_batches_tracked`` included), so :func:`load_init_weights` or
    :func:`safetensors.torch.load_file` give back identical tensors. Tensors that share storage
    (tied weights, views), which safetensors refuses, are written as separate copies. The file is
    written beside `path` under a temporary name and renamed over it, so a crash leaves the old
    file or the new one, never a torn one. The header's metadata says ``{"format": "pt"}``, as
    Hugging Face's files do, plus `metadata` (strings), e.g. what ``l2b pretrain`` made it for.

    Parameters
    ----------
    state_dict : mapping of str to Tensor
        E.g. ``model.state_dict()``; dense (strided) tensors on any device.
    path : str or PathLike
        Where to write, conventionally ``*.safetensors``; its directory must exist.

    Raises
    ------
    ValueError
        When a key is not a string or a value is not a dense tensor (the key is named).
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[torch.device, int]] = set()
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            what = value.layout if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"save_safetensors: {key!r} must be a string key holding a dense tensor, got {what}")
        tensor = value.detach().cpu().contiguous()
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        if tensor.untyped_storage().nbytes() and storage in seen:
            tensor = tensor.clone()  # safetensors refuses tensors that share memory
        seen.add(storage)
        tensors[key] = tensor
    # Beside the file, so that the rename stays on one file system.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        # Created here first to learn the mode the umask gives a new file: the safetensors writer
        # leaves its files owner-only, unlike torch.save's model.pt beside it.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        mode = os.fstat(fd).st_mode & 0o777
        os.close(fd)
        save_file(tensors, tmp, metadata={**(metadata or {}), "format": "pt"})
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:  # on disk before the rename makes it the file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
