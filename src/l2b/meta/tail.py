"""The blocks of a model, for ``engine="tail"``: the exact engine over the last k blocks only.

``engine="tail"`` with ``tail_modules=k`` runs the forward engine with only the parameters of the
model's last k blocks moving in the virtual step and carrying tangents; all other parameters stay
at their current values. It is exactly what ``engine="forward"`` gives when only those blocks are
trained (the others frozen), and with k = every block it *is* ``forward``.

Nothing has to be split for this. The tangents start at the first block of the tail by
themselves: forward-mode AD carries a tangent only where a dual tensor enters, so the blocks
before the tail run as plain forwards (no graph, detached parameters), and the meta batch's
backward stops at the first parameter that requires a gradient. Inside a training step the dual
forward is the real step's forward (as ``fused``), so the earlier blocks cost nothing extra.

What the model must say is which blocks come last. The protocol:

- a model may define ``meta_blocks(self) -> Sequence[nn.Module]``: its submodules that hold the
  parameters, in the order the forward applies them, disjoint, together holding every trainable
  parameter; parameter-free steps between them (reshapes, pooling, activations) may be left out.
  The models in ``l2b.models`` define it: residual blocks count as one block each.
- an ``nn.Sequential`` needs nothing: its children are its blocks, nested ``nn.Sequential``
  containers expanded.
- any other model is refused with an error saying what to add.

k counts the blocks that own trainable parameters (``requires_grad``), from the end; the
parameter-free ones are skipped, having nothing to differentiate.
"""

from __future__ import annotations

from torch import nn


def _expand(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [b for child in module for b in _expand(child)]
    return [module]


def model_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's blocks in forward order, as (qualified name, module) pairs (see the module doc).

    Raises
    ------
    ValueError
        For a model that is not an ``nn.Sequential`` and defines no ``meta_blocks()``, or whose
        ``meta_blocks()`` lists a module that is not its submodule, lists a parameter twice, or
        leaves a trainable parameter out.
    """
    cls = type(model).__name__
    if callable(getattr(model, "meta_blocks", None)):
        blocks = list(model.meta_blocks())
        source = f"{cls}.meta_blocks()"
    elif isinstance(model, nn.Sequential):
        blocks = _expand(model)
        source = f"the children of {cls}"
    else:
        raise ValueError(
            f"engine='tail' needs the order of model {cls}'s blocks, but {cls} is not an nn.Sequential and "
            "defines no meta_blocks(): add a method meta_blocks(self) returning its submodules that hold "
            "parameters in the order forward applies them (see l2b.meta.tail), or use engine='head' or "
            "engine='forward'"
        )
    module_name = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    param_name = {id(p): n for n, p in model.named_parameters()}
    out: list[tuple[str, nn.Module]] = []
    seen: dict[int, str] = {}
    for block in blocks:
        if id(block) not in module_name:
            raise ValueError(f"{source} lists a {type(block).__name__} that is not a submodule of {cls}")
        name = module_name[id(block)]
        for p in block.parameters():
            if id(p) in seen:
                raise ValueError(
                    f"{source}: parameter {param_name[id(p)]!r} belongs to two blocks ({seen[id(p)]!r} and {name!r})"
                )
            seen[id(p)] = name
        out.append((name, block))
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(
            f"{source} leaves out the trainable parameter(s) {', '.join(missing)}: every one must belong to a block"
        )
    return out


def tail_parameters(model: nn.Module, k: int) -> tuple[str, ...]:
    """Names of the trainable parameters of the model's last `k` blocks that own any.

    Raises
    ------
    ValueError
        When `k` is not a positive int or exceeds the number of such blocks (the message gives it).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"tail_modules must be a positive int, got {k!r}")
    param_name = {id(p): n for n, p in model.named_parameters()}
    trainable = [[param_name[id(p)] for p in block.parameters() if p.requires_grad] for _, block in model_blocks(model)]
    trainable = [names for names in trainable if names]
    if k > len(trainable):
        raise ValueError(
            f"tail_modules={k} but model {type(model).__name__} has {len(trainable)} blocks with trainable "
            f"parameters; tail_modules={len(trainable)} is the whole network (engine='forward')"
        )
    return tuple(n for names in trainable[-k:] for n in names)
