"""Name lists of the library's choices that need no code to define: each is defined here, once.

This module imports nothing, so the command line can list these choices in ``l2b train --help``
and check an argument against them without importing torch (which alone takes about a second).
The modules that use a list import it from here and re-export it where it has always been:
``l2b.meta.ENGINES``, ``l2b.meta.NORMALIZATIONS``, ``l2b.noise.NOISE_KINDS``,
``l2b.training.config.META_SOURCES`` and ``PRECISIONS``. The registries that fill themselves as
their modules are imported (methods, models, data sets) are read by :mod:`l2b.cli.declared`.
"""

from __future__ import annotations

__all__ = [
    "DEVICE_HELP",
    "ENGINES",
    "META_SOURCES",
    "MASK_NOISE_KINDS",
    "NOISE_KINDS",
    "NORMALIZATIONS",
    "PRECISIONS",
    "PRESETS",
    "did_you_mean",
]


def did_you_mean(name: object, choices) -> str:
    """`` (did you mean 'x'?)`` naming the choice closest to a mistyped `name`, or ``""`` when
    none is close: the tail of every "unknown ..." message of l2b's registries."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


ENGINES = ("forward", "fused", "reverse", "head", "tail")
"""Meta-gradient engines (:func:`l2b.meta.meta_weights`). ``fused`` computes the weights as
``forward`` does; it differs only inside a training step, where its dual forward is also the
real step's forward (see l2b.methods.meta), so meta_weights treats it as ``forward``. ``head``
and ``tail`` are the restricted engines (see l2b.meta.engine's docstring)."""

NORMALIZATIONS = ("org", "softmax", "sigmoid")
"""How raw meta-gradient scores become example weights (:func:`l2b.meta.normalize_scores`)."""

NOISE_KINDS: tuple[str, ...] = (
    "none",
    "symmetric",
    "symmetric-uniform",
    "pair",
    "cifar10-asymmetric",
    "cifar100-asymmetric",
    "cifar100-hierarchical",
)
"""Names accepted by :func:`l2b.noise.make_noise`."""

MASK_NOISE_KINDS: tuple[str, ...] = ("paper", "boundary", "drop", "spurious", "coarse")
"""The mask-noise simulators (:data:`l2b.segmentation.noise.MASK_NOISE`): the values of ``noise``
on a segmentation data set, besides ``none``."""

META_SOURCES = ("split", "file", "trusted", "confident", "none")
"""Where a run's meta set comes from (:class:`l2b.training.TrainConfig`'s ``meta_source``)."""

PRECISIONS = ("fp32", "bf16")
"""Training-step precisions; :data:`l2b.training.AUTOCAST_DTYPES` maps each to its autocast dtype."""

DEVICE_HELP = "'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ..."
"""What a ``device`` argument accepts, in words (:func:`l2b.training.resolve_device` checks it)."""

PRESETS: dict[str, dict[str, object]] = {
    "fast": {
        "values": {"meta_every": 2},
        "help": "l2b / l2rw with the meta-gradient on every 2nd step, each example's remembered weights "
        "between: 2.2x a plain step instead of 3.3x (CIFAR grid's CNN), measured to lose 2.0-2.3 points "
        "where noise hurts (docs/performance.md); the default stays exact (meta_every 1)",
    },
}
"""Named sets of config values (``l2b train --preset NAME``), applied over a ``--config`` file and
under the command line's own options. ``values``: the config keys it sets; ``help``: what it does
and what it was measured to cost and keep (docs/performance.md, "The cost frontier")."""
