"""The output layer for ``engine="head"``: finding it, reading its input, and its closed form.

``engine="head"`` restricts the meta-gradient to the final ``nn.Linear`` (weight W (K, D), bias
b (K,)): only W and b move in the virtual step, every other parameter stays where it is. With the
head's input h_i (the penultimate features, D) and logits z_i = W h_i + b the forward engine's
formula then needs no automatic differentiation at all:

    g_W = (1/M) sum_j (softmax(z^m_j) - onehot(y^m_j)) h^m_j^T      (K, D)
    g_b = (1/M) sum_j (softmax(z^m_j) - onehot(y^m_j))              (K,)
    zdot_i = s_W g_W h_i + s_b g_b                                   (K,)
    r[k, i] = (softmax(z_i) - t[k, i]) . zdot_i

where the meta logits z^m come from the backbone at theta and the head at theta'(0) (the real SGD
step with a zero gradient: weight decay and momentum move W and b), and s_W, s_b are the virtual
step's gradient scales of W and b. This is exactly what ``engine="forward"`` gives when only the
head is trained (backbone frozen, ``requires_grad=False``): the features do not depend on W and
b, so train-mode BatchNorm in the backbone couples nothing here.

The head is found structurally, then confirmed on a forward: it must be the model's last
``nn.Linear`` in ``model.modules()`` order (or the one the user names), run exactly once, on 2-d
features, and its output must *be* the model's output (the same tensor, checked by forward hooks
on the head and on the model). Anything else is refused: the closed form would be wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WHAT_TO_DO = (
    "name the output layer with head='<module name>' (config key engine_head), or use engine='tail' "
    "(the last k blocks, exact) or engine='forward' (the whole network)"
)


def find_head(model: nn.Module, *, name: str | None = None) -> str:
    """The qualified name of the head candidate: `name`, or the model's last ``nn.Linear``.

    Only the structure is checked here; :func:`capture_head` confirms on a forward that this module
    produces the model's output. ``""`` names the model itself (a bare ``nn.Linear``).

    Raises
    ------
    ValueError
        When `name` is not a submodule of `model` or not an ``nn.Linear``, or when the model has no
        ``nn.Linear`` at all. The message names the model's class and says what to do.
    """
    cls = type(model).__name__
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    listed = ", ".join(repr(n) for n in linears) or "none"
    if name is not None:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"head={name!r}: model {cls} has no submodule {name!r} (its nn.Linear modules: {listed})"
            ) from None
        if not isinstance(module, nn.Linear):
            raise ValueError(
                f"head={name!r}: {cls}.{name} is a {type(module).__name__}, not an nn.Linear; engine='head' "
                f"needs the linear layer that produces the logits (its nn.Linear modules: {listed})"
            )
        return name
    if not linears:
        raise ValueError(
            f"engine='head' needs a model whose logits come out of an nn.Linear, but model {cls} has no "
            f"nn.Linear module; use engine='tail' (the last k blocks, exact) or engine='forward'"
        )
    return linears[-1]


class HeadCapture:
    """What forward hooks saw of one forward: the head's input and output and the model's output.

    Filled in by :func:`capture_head`; read with :meth:`features` once the forward has returned.
    """

    def __init__(self, model: nn.Module, head: str) -> None:
        self.model_class = type(model).__name__
        self.head = head
        self.calls = 0
        self.inputs: Tensor | None = None
        self.head_output: Tensor | None = None
        self.model_output: object = None

    def _on_head(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self.calls += 1
        self.inputs, self.head_output = args[0], output

    def _on_model(self, module: nn.Module, args: tuple, output: object) -> None:
        self.model_output = output

    def features(self) -> Tensor:
        """The head's input h (B, D) of the captured forward (graph kept: detach it if needed).

        Raises
        ------
        ValueError
            When the head did not run exactly once on 2-d features, or when its output is not the
            model's output (the forward changes the logits after the head, or ends elsewhere).
        """
        where = f"model {self.model_class}'s nn.Linear {self.head!r}"
        if self.calls != 1:
            raise ValueError(
                f"engine='head': {where} ran {self.calls} times in one forward, but the closed form needs the "
                f"layer that produces the logits, run once; {WHAT_TO_DO}"
            )
        if self.head_output is not self.model_output:
            raise ValueError(
                f"engine='head': the output of {where} is not the model's output (the forward changes it "
                f"afterwards, or the logits come from another module), so it is not the head; {WHAT_TO_DO}"
            )
        if self.inputs is None or self.inputs.dim() != 2:
            shape = None if self.inputs is None else tuple(self.inputs.shape)
            raise ValueError(
                f"engine='head': {where} receives features of shape {shape}, but the head must map (B, D) "
                f"features to (B, K) logits; {WHAT_TO_DO}"
            )
        return self.inputs


@contextmanager
def capture_head(model: nn.Module, head: str) -> Iterator[HeadCapture]:
    """Record the head's input and output over the forward(s) run inside the block.

    Registers one forward hook on the head and one on `model` and removes both on exit, whatever
    happens: nothing stays registered on the caller's model. Under DistributedDataParallel pass the
    wrapped module (the hooks fire when the wrapper's forward calls it). Works for plain calls
    and ``torch.func.functional_call`` alike.
    """
    cap = HeadCapture(model, head)
    handles = [
        model.get_submodule(head).register_forward_hook(cap._on_head),
        model.register_forward_hook(cap._on_model),
    ]
    try:
        yield cap
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def head_gradient(features: Tensor, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The gradient of the *summed* cross-entropy with respect to the head, in closed form.

    Parameters
    ----------
    features : Tensor, shape (M, D)
        The head's input for the meta batch.
    logits : Tensor, shape (M, K)
        The head's output (the model's logits) for the meta batch.
    labels : Tensor, shape (M,) int64

    Returns
    -------
    grad_weight (K, D), grad_bias (K,), loss (scalar): sums over the M examples, so that replicas
    can add theirs before dividing by the global count.
    """
    delta = torch.softmax(logits, dim=1) - F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    loss = F.cross_entropy(logits, labels, reduction="sum")
    return delta.T @ features.to(delta.dtype), delta.sum(dim=0), loss


@torch.no_grad()
def head_jvp(features: Tensor, weight_tangent: Tensor | None, bias_tangent: Tensor | None, num_classes: int) -> Tensor:
    """zdot (B, K): the derivative of the logits W h + b along the head tangents (dW, db).

    `features` (B, D); `weight_tangent` (K, D) and `bias_tangent` (K,), either None for zero (a
    parameter the optimizer does not update, or a head without bias).
    """
    zdot = features.new_zeros(features.shape[0], num_classes)
    if weight_tangent is not None:
        zdot = zdot + features @ weight_tangent.to(features.dtype).T
    if bias_tangent is not None:
        zdot = zdot + bias_tangent.to(features.dtype)
    return zdot
