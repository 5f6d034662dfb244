"""The training-step protocol shared by every method, the method registry, and mixup.

A method turns one noisy batch (and, for meta methods, one clean meta batch) into one optimizer
step and returns a :class:`StepOutput` the trainer logs without knowing which method made it.

Data parallelism: ``Method.step`` with ``StepContext(dist=...)`` takes this process's shards of the noisy and
meta batches and a model wrapped in DistributedDataParallel; the update then equals the one a
single process makes on the concatenated batches (see :meth:`Method.step`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..meta import Collective
from ..names import did_you_mean
from ..options import Option
from ..registry import Registry
from .step import VIEW_KINDS, Batch, StepContext


def _options_of(cls: type[Method]) -> tuple[Option, ...]:
    return cls.declared_options()


METHODS: Registry[type[Method]] = Registry("method", options_of=_options_of)
"""The registered training methods (:class:`l2b.registry.Registry`); their options are declared
by the classes (:meth:`Method.declared_options`)."""


DECLARED: Any = object()
"""A constructor default that stands for the option its class declares, where subclasses declare
different defaults for one constructor (read with :meth:`Method.declared_default`)."""


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a :class:`Method` subclass to :data:`METHODS` under `name`.

    The class declares its options (:attr:`Method.options`, collected along its bases), and its
    constructors' keyword-only arguments must be exactly those: a declared option the
    constructor does not take, or a keyword nobody declared, is refused here.
    """

    def add(cls: type[Method]) -> type[Method]:
        declared = {o.name: o.default for o in cls.declared_options()}
        taken = _constructor_keywords(cls)
        if sorted(declared) != sorted(taken):
            raise TypeError(
                f"method {name!r}: declared options {sorted(set(declared) - set(taken))} but its constructor takes "
                f"{sorted(set(taken) - set(declared))} instead; declare each keyword-only argument as an Option in "
                "the class's `options`"
            )
        # A constructor default is the declared one, or None / DECLARED (then resolved to it by the class).
        differ = sorted(k for k, v in taken.items() if v is not None and v is not DECLARED and v != declared[k])
        if differ:
            raise TypeError(f"method {name!r}: the constructor's defaults of {differ} differ from the declared ones")
        unknown = sorted(kind for kind in cls.views.values() if kind not in VIEW_KINDS)
        if unknown:
            raise TypeError(f"method {name!r}: views of kind {unknown}; the kinds there are: {', '.join(VIEW_KINDS)}")
        METHODS.register(name)(cls)
        cls.name = name
        return cls

    return add


def _constructor_keywords(cls: type) -> dict[str, Any]:
    """{keyword-only argument: default} of the constructors along the class's bases (the
    subclass's default wins)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                out[p.name] = p.default
    return out


def list_methods(*, sort: bool = True) -> list[str]:
    """Names of all registered methods, sorted (or in the order they were registered)."""
    return METHODS.names(sort=sort)


def method_class(name: str) -> type[Method]:
    """The registered class of method `name` (ValueError naming the known methods otherwise)."""
    return METHODS.get(name)


def method_options(name: str) -> dict[str, Any]:
    """{option: default} of method `name`, as declared (see :meth:`Method.declared_options`)."""
    return METHODS.option_defaults(name)


def create_method(name: str, **options) -> Method:
    """Build a registered method; options are its declared options (keyword-only constructor arguments)."""
    cls = method_class(name)
    known = METHODS.option_defaults(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"method {name!r} has no option(s) {', '.join(unknown)}; its options: {', '.join(known)}"
            f"{did_you_mean(unknown[0], known)}"
        )
    return cls(**options)


class NonFiniteStep(ArithmeticError):
    """A step's gradient is NaN or infinite: :meth:`Method.step` raises it before the optimizer
    step, so parameters and optimizer state are unchanged (the trainer then skips the step)."""


def _check_finite_gradients(params) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    # One fused norm per device: a NaN or Inf anywhere makes the norm non-finite.
    if grads and not all(bool(torch.isfinite(n)) for n in torch._foreach_norm(grads)):
        raise NonFiniteStep


@dataclass
class StepOutput:
    """What one training step reports (all tensors detached).

    Attributes
    ----------
    loss : float
        The loss that was back-propagated.
    alpha, beta : Tensor of shape (B,) or None
        Per-example weights of the observed-label and pseudo-label costs, when the method has them.
    pseudo_labels : Tensor of shape (B,) or None
    predictions : Tensor of shape (B,) or None
        argmax of the train-mode logits of the step's own forward (before the update), when the
        inputs were not mixed: the trainer measures the fit to the given labels from these
        instead of a second pass over the data.
    stats : dict[str, float]
        Method-specific scalars (meta loss, whether all weights were zero, gradient norm ...).

    Notes
    -----
    Under data parallelism (``StepContext.dist``) ``loss`` and every stat are global (the
    values of one process on the concatenated batch, the same on every replica), while
    ``alpha``, ``beta`` and ``pseudo_labels`` are this replica's entries, B = its shard's size
    (:func:`l2b.distributed.gather_cat` joins them in rank order).
    """

    loss: float
    alpha: Tensor | None = None
    beta: Tensor | None = None
    pseudo_labels: Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)
    predictions: Tensor | None = None


def predicted(logits: Tensor, targets: Tensor) -> Tensor | None:
    """argmax over the classes of the logits the step trained on (B, *label_shape), for the
    trainer's fit-to-the-labels figures; None when the inputs were mixed (probability targets,
    float), whose predictions say nothing about how each example's own label is fitted."""
    return None if targets.is_floating_point() else logits.detach().argmax(dim=1)


def mixup(
    inputs: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    alpha: float,
    generator: torch.Generator | None = None,
    shard: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Mix each example with one random partner (one permutation, one lambda for the batch).

    Parameters
    ----------
    inputs : Tensor, shape (B, ...)
    labels : Tensor, shape (B,) int64
    alpha : float
        lambda ~ Beta(alpha, alpha); the paper uses 32, so lambda stays close to 0.5.
    shard : int or None
        Data parallelism: this replica's rank, `inputs` its shard of the global batch. Each
        shard is mixed within itself (partners come from the same shard), with the lambda shared
        by all shards, and `generator` advances by exactly two draws whatever the shard's size,
        so generators that start in step on every replica stay in step. The permutation comes
        from a private generator seeded by the second draw and `shard`. ``None`` (one process):
        one draw for lambda, then the permutation from `generator` itself.

    Returns
    -------
    mixed inputs (B, ...) and probability targets (B, K).
    """
    lam, perm = mix_coefficients(inputs.shape[0], alpha=alpha, generator=generator, shard=shard)
    perm = perm.to(inputs.device)
    onehot = F.one_hot(labels, num_classes).to(inputs.dtype)
    return lam * inputs + (1 - lam) * inputs[perm], lam * onehot + (1 - lam) * onehot[perm]


def mix_coefficients(
    n: int, *, alpha: float, generator: torch.Generator | None = None, shard: int | None = None
) -> tuple[float, Tensor]:
    """lambda ~ Beta(alpha, alpha) and a random permutation of n rows (CPU, int64), as
    :func:`mixup` draws them (see there for `shard`)."""
    # torch's Beta sampler only draws from the global RNG; numpy's takes a seed we derive from
    # the caller's (CPU) generator, so runs are reproducible and global state is left alone.
    seed = int(torch.randint(2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    if shard is None:
        return lam, torch.randperm(n, generator=generator)
    # randperm(n) consumes a number of draws that depends on n; shards may differ in size
    perm_seed = int(torch.randint(2**62, (1,), generator=generator))
    private = int(np.random.SeedSequence([perm_seed, int(shard)]).generate_state(1, np.uint64)[0])
    return lam, torch.randperm(n, generator=torch.Generator().manual_seed(private))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    ddp = getattr(nn.parallel, "DistributedDataParallel", None)
    return model.module if ddp is not None and isinstance(model, ddp) else model


def batch_mean(per_example: Tensor, dist: Collective | None) -> Tensor:
    """The mean of per-example losses (B,), or per-position ones (B, ...), over the global batch,
    as this replica's share.

    One process: ``per_example.mean()``. With `dist`: ``sum(per_example) * world_size / n_global``
    (n_global, the number of entries, from one reduction), so that after DistributedDataParallel
    averages the replicas' gradients (divides their sum by world_size) the gradient is that of the
    mean over the concatenated batch, whatever the shards' sizes.
    """
    if dist is None:
        return per_example.mean()
    count = dist.sum(torch.tensor([float(per_example.numel())], dtype=per_example.dtype, device=per_example.device))
    return per_example.sum() * (dist.world_size / count[0])


def _check_distributed(model: nn.Module, dist: Collective | None) -> None:
    wrapped = unwrap_model(model) is not model
    if dist is None and wrapped:
        raise ValueError(
            "the model is wrapped in DistributedDataParallel but step() got no dist context: pass "
            "dist=l2b.distributed.DistContext (each replica's batches are then its shards)"
        )
    if dist is not None and dist.world_size > 1 and not wrapped:
        raise ValueError(
            f"dist has world_size {dist.world_size} but the model is not wrapped in "
            "DistributedDataParallel, so its gradients would not be averaged across replicas: "
            "wrap it with l2b.distributed.wrap_ddp(model, dist)"
        )


class Method:
    """Base class: one optimizer step on one batch.

    Subclasses implement :meth:`loss`. The parameters are the options shared by every method
    (keyword-only).

    Parameters
    ----------
    mixup : bool
        Train on mixed-up inputs with probability targets (the meta batch is never mixed).
    mixup_alpha : float
        Beta(mixup_alpha, mixup_alpha) mixing coefficient.
    clip_grad : float or None
        Clip the gradient's global 2-norm to this value before the step.
    """

    name: str = "?"
    needs_meta: bool = False
    #: the options this class adds to its bases' (see :meth:`declared_options`)
    options: ClassVar[tuple[Option, ...]] = (
        Option("mixup", "bool", False, "mixup with Beta(a, a), one permutation per batch (never the meta batch)"),
        Option("mixup_alpha", "float", 32.0, "mixup's Beta parameter a", above=0),
        Option("clip_grad", "float", None, "clip the gradient norm to this value (unset: no clipping)", above=0),
    )
    #: whether the method computes meta-gradient weights: it then takes the engines' options too
    uses_engine: ClassVar[bool] = False
    #: how many networks the method trains; the model it steps holds them (see l2b.methods.TwoNetworks)
    networks: ClassVar[int] = 1
    #: the width of the projection head each network of a pair gets, for contrastive losses (None: none)
    projection_dim: ClassVar[int | None] = None
    #: more views of each noisy example its step takes, name -> augmentation kind (one of
    #: :data:`l2b.methods.step.VIEW_KINDS`); ``Batch.views`` holds them by name
    views: ClassVar[dict[str, str]] = {}
    #: keyword options for DistributedDataParallel around its model
    ddp_options: ClassVar[dict[str, Any]] = {}

    @classmethod
    def declared_options(cls) -> tuple[Option, ...]:
        """Every option of the method: those of its bases first, then its own (a class may
        re-declare a base's option, with another default say), then, for a method that
        :attr:`uses_engine`, the engines' own options. The registry entry that configs, the
        command line and the docs read."""
        out: dict[str, Option] = {}
        for klass in reversed(cls.__mro__):
            for option in klass.__dict__.get("options", ()):
                out[option.name] = option
        if cls.uses_engine:
            from ..meta.engines import engine_options

            out.update((o.name, o) for o in engine_options())
        return tuple(out.values())

    @classmethod
    def declared_default(cls, name: str) -> Any:
        """The default of the option `name` as this class declares it."""
        return next(o.default for o in cls.declared_options() if o.name == name)

    def __init__(self, *, mixup: bool = False, mixup_alpha: float = 32.0, clip_grad: float | None = None):
        if mixup_alpha <= 0:
            raise ValueError(f"mixup_alpha must be positive, got {mixup_alpha}")
        if clip_grad is not None and clip_grad <= 0:
            raise ValueError(f"clip_grad must be positive or None, got {clip_grad}")
        self.mixup = mixup
        self.mixup_alpha = mixup_alpha
        self.clip_grad = clip_grad

    # -- the trainer's contract beyond the step (defaults: nothing to do, nothing to save) ------
    def warmup_method(self) -> Method:
        """The method of the warm-up epochs: plain cross-entropy with this method's mixup and
        clipping, unless the method warms up its own way (two networks each on its own)."""
        return create_method("ce", mixup=self.mixup, mixup_alpha=self.mixup_alpha, clip_grad=self.clip_grad)

    def per_example_outputs(self) -> dict[str, np.ndarray]:
        """Per-example arrays (N,) the run saves in per_example.npz beside its own (e.g. a clean
        probability); none by default."""
        return {}

    def start_epoch(self, model: nn.Module, train, *, epoch: int, device: torch.device) -> dict[str, float]:
        """Called by the trainer before the first step of every epoch this method trains (not
        again when a checkpointed epoch resumes: what it computes belongs in :meth:`state_dict`).

        `train` is the training set as a batch source (``len``, ``labels`` (N,) given labels,
        ``eval_batches``), `epoch` the 0-based epoch. Returns scalars for the epoch's record. A
        method that works on the whole training set between epochs (DivideMix's per-example
        losses and their two-component split) does it here.
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The method's own state (per-example statistics, a split), saved in every checkpoint;
        tensors and plain containers only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def loss(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        inputs: Tensor,
        targets: Tensor,
        batch: Batch,
        ctx: StepContext,
    ) -> tuple[Tensor, StepOutput]:
        """Return the scalar loss to back-propagate and the step's report (loss filled in later).

        `inputs` (B, ...) and `targets` are the batch's, mixed up when the method mixes: class
        indices (B,) or probability targets (B, K). `batch` holds the rest (the meta batch).
        Under data parallelism (``ctx.dist``), `model` may be a DistributedDataParallel wrapper
        (run the real forward through it) and the loss must be this replica's share scaled so that
        DDP's average of the replicas' gradients is the gradient of the single-process loss on the
        concatenated batch (see :func:`batch_mean`).
        """
        raise NotImplementedError

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, ctx: StepContext) -> StepOutput:
        """One training step: (mixup), loss, backward, (clip), optimizer step.

        Raises :class:`NonFiniteStep` before the optimizer step when the gradient is not finite
        (the parameters and the optimizer state are then unchanged; BatchNorm statistics may
        have moved, which the trainer restores).

        Parameters
        ----------
        model : nn.Module
            The model to train (a DistributedDataParallel wrapper under data parallelism).
        optimizer : torch.optim.Optimizer
            Steps `model`'s parameters.
        batch : Batch
            The noisy batch (``inputs`` (B, ...), ``labels`` (B,) int64), its ``index`` for
            methods that keep per-example state, the clean meta batch for meta methods, and the
            ``views`` the method declares (:attr:`views`).
        ctx : StepContext
            ``num_classes``; ``generator``, from which all of the step's randomness (mixup, for
            instance) draws; the epoch progress; and ``dist``, for data parallelism (e.g.
            :class:`l2b.distributed.DistContext`): `model` is wrapped in DistributedDataParallel
            (refused otherwise when world_size > 1), the batches are this replica's shards of the
            global noisy and meta batches (concatenated in rank order; sizes may differ, e.g.
            ``torch.tensor_split``), and every replica calls ``step`` with the same method,
            optimizer settings and generator state. Meta weights are computed on the unwrapped
            module with global reductions; the real forward and backward run through the wrapper,
            whose gradient averaging then yields the single-process gradient of the concatenated
            batch; clipping acts on that averaged gradient, so parameters and momentum buffers stay
            identical on every replica and equal those of one process (exactly for models without
            coupling between samples; BatchNorm uses each shard's statistics, as DDP does, and
            mixup mixes within each shard: see :func:`mixup`).
        """
        dist = ctx.dist
        if self.needs_meta and (batch.meta_inputs is None or batch.meta_labels is None):
            raise ValueError(f"method {self.name!r} needs a clean meta batch")
        _check_distributed(model, dist)
        model.train()
        inputs, targets = batch.inputs, batch.labels
        if self.mixup:
            inputs, targets = mixup(
                inputs,
                batch.labels,
                ctx.num_classes,
                alpha=self.mixup_alpha,
                generator=ctx.generator,
                shard=None if dist is None else dist.rank,
            )
        loss, out = self.loss(model, optimizer, inputs, targets, batch, ctx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _check_finite_gradients(p for group in optimizer.param_groups for p in group["params"])
        if self.clip_grad is not None:
            # under DDP, .grad already holds the replicas' average: the single-process gradient
            out.stats["grad_norm"] = float(nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad))
        optimizer.step()
        if dist is None:
            out.loss = float(loss.detach())
        else:  # each replica's share is world_size times its part of the global loss
            out.loss = float(dist.sum(loss.detach().reshape(1))[0]) / dist.world_size
        return out
