"""`l2b.fit`: train any classifier module on noisy labels with a clean meta set, in one call.

>>> import l2b
>>> result = l2b.fit(model, (x_noisy, y_noisy), (x_clean, y_clean), epochs=40)
>>> result.best_epoch, result.history[-1]["meta_accuracy"]
>>> issues = result.find_label_issues()  # the training labels that look wrong, most suspicious first

The optimisation is the command line's: SGD with momentum and weight decay, a cosine learning-rate
schedule over every step, `warmup_epochs` of plain cross-entropy before the method starts, and the
epoch with the best clean meta accuracy selected at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .methods import TwoNetworks, create_method
from .reports.issues import label_issues
from .tasks import Task, get_task
from .training.batches import TensorData
from .training.config import AUTOCAST_DTYPES
from .training.optim import Optimization, batches_per_epoch
from .training.setup import build_trainer, resolve_device, seeded
from .training.trainer import FitResult, predict_proba
from .training.validation import check_meta_set

__all__ = ["FitOutput", "fit"]


@dataclass
class FitOutput(FitResult):
    """What :func:`fit` returns: the trainer's :class:`~l2b.training.trainer.FitResult`
    (``history``, ``best_epoch``, ``best_state``, ``per_example``, ``seconds``) and what the label
    issues are read from.

    Attributes
    ----------
    given_label : ndarray of int64, shape (N,)
        The training labels as passed to :func:`fit` (possibly noisy).
    pred_prob : ndarray of float32, shape (N, K)
        The selected model's eval-mode class probabilities on the training inputs (no
        augmentation), computed once at the end of :func:`fit`.
    clean_label : ndarray of int64, shape (N,), or None
        ``clean_labels`` as passed to :func:`fit`, when the truth is known (a simulation).
    method_outputs : dict of str to ndarray (N,)
        The method's own per-example arrays (DivideMix: ``clean_prob``); empty for the others.
    """

    given_label: np.ndarray
    pred_prob: np.ndarray
    clean_label: np.ndarray | None
    method_outputs: dict[str, np.ndarray]

    def per_example_arrays(self) -> dict[str, np.ndarray]:
        """The per-example arrays under the names of a run's ``per_example.npz``, so that every
        function of :mod:`l2b.reports.issues` takes them (``detection_scores`` too, when
        ``clean_label`` is known): ``index`` (N,) (positions in the training set), ``given_label``
        (N,), ``pred_prob`` (N, K), ``alpha`` / ``beta`` / ``alpha_mean`` / ``beta_mean`` (N,)
        (NaN for methods without weights), ``pseudo_label`` (N,), ``clean_label`` (N,) when
        known, and the method's own arrays."""
        pe = self.per_example
        return {
            "index": np.arange(len(self.given_label), dtype=np.int64),
            "given_label": self.given_label,
            "pred_prob": self.pred_prob,
            "alpha": pe.alpha,
            "beta": pe.beta,
            "alpha_mean": pe.alpha_mean,
            "beta_mean": pe.beta_mean,
            "pseudo_label": pe.pseudo,
            **({"clean_label": self.clean_label} if self.clean_label is not None else {}),
            **self.method_outputs,
        }

    def find_label_issues(self, *, threshold: float = 0.5) -> dict[str, np.ndarray]:
        """The training examples ranked by how likely their given label is correct, as cleanlab's
        ``find_label_issues`` ranks them: :func:`l2b.reports.issues.label_issues` on
        :meth:`per_example_arrays` (the run's ``label_issues.csv``, in memory).

        Parameters
        ----------
        threshold : float in [0, 1]
            An example is flagged (``is_label_issue``) when the selected model gives its given
            label a probability below this and predicts another class.

        Returns
        -------
        dict of numpy columns, each (N,), one row per training example, most suspicious first
        (``label_quality`` ascending, ties by index): ``index`` (position in `train`),
        ``given_label``, ``predicted_label``, ``label_quality``, ``is_label_issue``,
        ``alpha_share`` (NaN for methods without weights), and ``clean_probability`` for the
        DivideMix methods. ``pandas.DataFrame(table)`` makes a data frame of it (pandas is not
        a dependency of l2b).
        """
        return label_issues(self.per_example_arrays(), threshold=threshold)


def fit(
    model: nn.Module,
    train: Any,
    meta: Any = None,
    *,
    test: Any = None,
    method: str = "l2b",
    epochs: int = 40,
    batch_size: int = 64,
    meta_batch_size: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
    warmup_epochs: int | None = None,
    max_bad_steps: int = 10,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_classes: int | None = None,
    allow_incomplete_meta: bool = False,
    clean_labels: Any = None,
    callbacks: tuple[Callable[[dict[str, Any]], None], ...] = (),
    progress: bool = False,
    augment: Callable[..., Tensor] | None = None,
    precision: str = "fp32",
    task: str = "classification",
    **method_options: Any,
) -> FitOutput:
    """Train `model` on noisy labels with `method`, selecting the epoch on the clean meta set.

    The model is trained **in place**: it is moved to `device`, trained, and at the end the
    state of the selected epoch (best clean meta accuracy, ties broken by meta loss; the last
    epoch when there is no meta set) is loaded into it and it is put in eval mode.

    Parameters
    ----------
    model : nn.Module
        Any module mapping a batch of inputs (B, ...) to logits (B, K). Parameters with
        ``requires_grad=False`` are left alone (a frozen backbone, say).
    train : (inputs, labels)
        The noisy training set: inputs (N, ...) and integer labels (N,) in [0, K), as tensors,
        numpy arrays or anything ``np.asarray`` takes, or an object with ``inputs`` and ``labels``
        attributes (:class:`~l2b.training.TensorData`, :class:`~l2b.data.ArrayDataset`).
        Floating-point inputs are cast to the model's parameter dtype. Labels are class indices:
        map other labels (strings, say) with ``classes, y = np.unique(labels, return_inverse=True)``,
        or use :class:`l2b.sklearn.L2BClassifier`, which takes any labels. Every class the meta set
        holds needs at least one training example.
    meta : (inputs, labels) or None
        The small clean, trusted set. Required by the meta methods (``"l2b"``, ``"l2rw"``); every
        method uses it, when given, to select the epoch. It must hold every class 0 .. K-1
        (:func:`l2b.training.validation.check_meta_set`, as ``l2b train`` checks it), unless
        `allow_incomplete_meta`.
    test : (inputs, labels) or None
        Evaluated every epoch for the record only (``test_accuracy`` / ``test_loss``); nothing is
        selected on it.
    method : str
        ``"l2b"``, ``"l2rw"``, ``"ce"``, ``"bootstrap-soft"``, ``"bootstrap-hard"``, ``"dividemix"``,
        ``"dividemix-l2b"`` (the registry: :func:`l2b.methods.list_methods`).
    epochs, warmup_epochs : int
        Epochs in all, of which the first `warmup_epochs` use plain cross-entropy (default: an
        eighth of `epochs`, :func:`l2b.training.optim.default_warmup`; one that leaves no epoch
        for a method other than ``"ce"`` is refused).
    batch_size, meta_batch_size : int
        Every epoch covers every training example once in ceil(N / batch_size) nearly equal batches;
        meta batches are drawn from reshuffled passes over the meta set. Both at least 2 (as in
        ``l2b train``: the settings are checked by :class:`l2b.training.Optimization`).
    lr, momentum, weight_decay, nesterov : float, float, float, bool
        SGD settings; the learning rate follows a cosine schedule from `lr` to 0 over all steps.
    max_bad_steps : int
        Steps with a non-finite gradient are skipped; this many in a row stop the call
        (:class:`~l2b.training.trainer.TrainingDiverged`).
    device : "cpu", "cuda", "cuda:1", "auto", ...
    seed : int
        Seeds batch order, meta batches, mixup (the trainer's generator, ``seed + 2``, as in
        ``l2b train``) and the global torch RNG (dropout) for the duration of the call. The
        caller's global RNG state is saved and restored (``torch.random.fork_rng``); numpy's and
        Python's global RNGs are not used. The same settings, data, initial weights and seed give
        ``l2b train``'s run bit for bit (see :mod:`l2b.training.setup`).
    num_classes : int or None
        K; by default the width of the model's output, read off one forward pass in eval mode.
    allow_incomplete_meta : bool
        Accept a meta set that lacks some class, with an
        :class:`~l2b.training.validation.IncompleteMetaSetWarning` naming the missing classes
        (``allow_incomplete_meta`` of ``l2b train``).
    clean_labels : (N,) or None
        The true training labels, when known (synthetic noise): the records then hold the mean
        weights on truly clean and truly noisy examples.
    callbacks : sequence of callables
        Each receives every epoch's record dict (epoch, phase, lr, train_loss, meta_accuracy,
        test_accuracy, ...) as soon as the epoch ends.
    progress : bool
        Show a progress bar.
    augment : callable (batch (B, ...), *, generator) -> batch, or None
        Applied on the device to every noisy and meta training batch, drawing from the trainer's
        generator: :func:`l2b.data.augment_batch` (crop and flip of images) or
        :class:`l2b.data.FeatureNoise` (Gaussian noise, the stand-in for other data). Needed by
        methods that train on two views of every example (``"dividemix"``, ``"dividemix-l2b"``,
        whose `model` must also be an :class:`l2b.methods.TwoNetworks` pair).
    task : "classification" or "segmentation"
        What a label is (:mod:`l2b.tasks`). ``"segmentation"``: labels are masks (N, H, W) of
        class indices per pixel, the model returns logits (N, K, H, W), the meta methods weigh
        every pixel's two costs, the records hold Dice and IoU and the epoch is chosen on the meta
        set's Dice. No `augment` there yet (the masks would have to follow each image's crop).
    precision : "fp32" or "bf16"
        ``"bf16"``: every training step under bfloat16 autocast (a GPU speed-up), with the
        meta-gradient, and so the weights, still in float32 (as ``precision: bf16`` in ``l2b
        train``). For channels-last, convert the model before the call
        (``model.to(memory_format=torch.channels_last)``).
    **method_options
        Passed to the method: ``mixup``, ``mixup_alpha``, ``clip_grad``, and for the meta methods
        ``engine``, ``normalize``, ``temperature`` (and ``head`` for ``engine="head"``,
        ``tail_modules`` for ``engine="tail"``); ``beta`` for the bootstrap methods.

    Returns
    -------
    FitOutput
        ``history`` (the epoch records), ``best_epoch`` (1-based), ``best_state`` (CPU state dict
        of that epoch, already loaded into `model`), ``per_example`` (last-epoch and mean weights
        and pseudo-labels, indexed like `train`), ``seconds``; ``given_label`` (N,) and
        ``pred_prob`` (N, K), the selected model's probabilities on `train` (one eval-mode pass
        at the end), from which ``find_label_issues()`` ranks the training labels.

    Raises
    ------
    ValueError
        For inputs and labels of different lengths, labels that are not integers in [0, K)
        (strings included), a meta method without a meta set, a meta set that lacks a class, a
        class of the meta set without a training example, mismatched example shapes, or bad
        settings.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters (none with requires_grad=True)")
    optim = Optimization(
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        batch_size=batch_size,
        meta_batch_size=meta_batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        max_bad_steps=max_bad_steps,
    )
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision={precision!r} must be one of {', '.join(AUTOCAST_DTYPES)}")
    algo = create_method(method, **method_options)
    if algo.networks == 2 and not isinstance(model, TwoNetworks):
        raise ValueError(
            f"method {method!r} trains two networks: pass model=l2b.methods.TwoNetworks(net, other_net), two "
            "networks of the same architecture initialised differently"
        )
    if algo.views and augment is None:
        raise ValueError(
            f"method {method!r} trains on {1 + len(algo.views)} augmented views of every example: pass augment= "
            "(l2b.data.augment_batch for images, l2b.data.FeatureNoise(std) for other data)"
        )
    the_task = get_task(task)
    if augment is not None and the_task.name == "segmentation":
        raise ValueError(
            "augment does not apply with task='segmentation' yet: the masks would not follow each image's "
            "random crop and flip"
        )
    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    float_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)

    train_t = _as_tensor_data(train, "train", dev, float_dtype, the_task)
    meta_t = _as_tensor_data(meta, "meta", dev, float_dtype, the_task) if meta is not None else None
    test_t = _as_tensor_data(test, "test", dev, float_dtype, the_task) if test is not None else None
    shape = tuple(train_t.inputs.shape[1:])
    for name, data in (("meta", meta_t), ("test", test_t)):
        if data is not None and tuple(data.inputs.shape[1:]) != shape:
            raise ValueError(
                f"{name} inputs have example shape {tuple(data.inputs.shape[1:])} but train inputs have {shape}"
            )
    smallest = len(train_t) // batches_per_epoch(len(train_t), batch_size)  # the trainer's nearly equal batches
    if smallest < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError(
            f"with {len(train_t)} training examples and batch_size={batch_size} some batches hold "
            "a single example, which BatchNorm cannot train on; use a larger batch_size"
        )
    if algo.needs_meta:
        if meta_t is None:
            raise ValueError(
                f"method {method!r} needs a clean meta set: pass meta=(meta_inputs, meta_labels), "
                "or use a method that does not (e.g. method='ce')"
            )
        if len(meta_t) < 2:
            raise ValueError(f"the meta set has {len(meta_t)} example; method {method!r} needs at least 2")

    model.to(dev)
    with seeded(int(seed), dev):
        k = _output_width(model, train_t.inputs[:2], tuple(train_t.labels.shape[1:]))
        if num_classes is not None and num_classes != k:
            raise ValueError(f"num_classes={num_classes} but the model returns {k} logits per example")
        for name, data in (("train", train_t), ("meta", meta_t), ("test", test_t)):
            if data is not None:
                _check_label_range(data.labels, k, name)
        if meta_t is not None:
            _check_classes(train_t.labels, meta_t.labels, k, allow_incomplete_meta=allow_incomplete_meta)
        clean = None
        if clean_labels is not None:
            clean = np.asarray(clean_labels.cpu() if isinstance(clean_labels, Tensor) else clean_labels)
            if clean.shape != tuple(train_t.labels.shape):
                raise ValueError(
                    f"clean_labels has shape {clean.shape}, expected {tuple(train_t.labels.shape)} like the "
                    "training labels"
                )

        trainer = build_trainer(
            model,
            method=algo,
            optim=optim,
            seed=int(seed),
            num_examples=len(train_t),
            num_classes=k,
            progress=progress,
            callbacks=tuple(callbacks),
            augment=augment,
            autocast_dtype=AUTOCAST_DTYPES[precision],
            task=the_task,
        )
        result = trainer.fit(train_t, meta_t, epochs=epochs, test=test_t, clean_labels=clean)
    model.load_state_dict(result.best_state)
    model.eval()
    # One eval-mode pass of the selected model, as l2b train writes pred_prob to per_example.npz.
    prob = predict_proba(model, train_t).cpu().numpy()
    return FitOutput(
        **{f.name: getattr(result, f.name) for f in fields(FitResult)},
        given_label=train_t.labels.cpu().numpy(),
        pred_prob=prob,
        clean_label=None if clean is None else clean.astype(np.int64),
        method_outputs=algo.per_example_outputs(),
    )


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _as_tensor_data(
    data: Any, name: str, device: torch.device, float_dtype: torch.dtype, task: Task | None = None
) -> TensorData:
    """(inputs, labels) in any of the accepted forms -> a checked TensorData on `device`; labels
    of the task's shape (classification: (N,); segmentation: (N, H, W))."""
    if hasattr(data, "inputs") and hasattr(data, "labels"):
        x, y = data.inputs, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise ValueError(
            f"{name} must be a pair (inputs, labels) or have .inputs and .labels, got {type(data).__name__}"
        )
    x = x.detach() if isinstance(x, Tensor) else _numeric_inputs(x, name)
    y = y.detach() if isinstance(y, Tensor) else torch.as_tensor(_integer_labels(y, name))
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} inputs must have shape (N, ...) with N >= 1, got {tuple(x.shape)}")
    if task is None or task.name == "classification":
        if y.dim() != 1:
            raise ValueError(f"{name} labels must be a 1-D array of class indices, got shape {tuple(y.shape)}")
    elif y.dim() < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} has {x.shape[0]} inputs but labels of shape {tuple(y.shape)}")
    else:
        task.check_labels(y, int(y.max()) + 1 if y.numel() and not y.is_floating_point() else 1, what=f"{name} labels")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name} has {x.shape[0]} inputs but {y.shape[0]} labels")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise ValueError(f"{name} labels must be integer class indices in [0, K), got dtype {y.dtype}")
    if x.is_complex():
        raise ValueError(f"{name} inputs must be real, got dtype {x.dtype}")
    if x.is_floating_point():
        bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            raise ValueError(
                f"{name} input {int(bad.nonzero()[0])} has NaN or Inf values ({int(bad.sum())} such examples)"
            )
        x = x.to(float_dtype)
    return TensorData(x.to(device), y.to(device=device, dtype=torch.int64))


def _numeric_inputs(x: Any, name: str) -> Tensor:
    try:
        arr = np.asarray(x)
        if arr.dtype.kind in "USO":
            raise TypeError(f"dtype {arr.dtype}")
        return torch.as_tensor(arr)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} inputs must be a numeric array of shape (N, ...): {err}") from None


def _integer_labels(y: Any, name: str) -> np.ndarray:
    """Labels as a numpy array; strings, bytes and other objects are refused unless every one is
    an integer (an object array of ints, as pandas may give)."""
    arr = np.asarray(y)
    if arr.dtype.kind not in "USO":
        return arr
    flat = arr.reshape(-1)
    if arr.dtype.kind == "O" and all(_is_int(v) for v in flat):
        return arr.astype(np.int64)
    first = next((v for v in flat if not _is_int(v)), None)
    first = first.item() if isinstance(first, np.generic) else first
    raise ValueError(
        f"{name} labels must be integer class indices in [0, K), got {type(first).__name__} values such as "
        f"{first!r}: map them to indices with `classes, y = np.unique(labels, return_inverse=True)` (the meta "
        "and test labels with the same classes: `np.searchsorted(classes, meta_labels)`), or use "
        "l2b.sklearn.L2BClassifier, which takes any labels"
    )


@torch.no_grad()
def _output_width(model: nn.Module, sample: Tensor, label_shape: tuple[int, ...] = ()) -> int:
    """K, from one eval-mode forward (which changes no BatchNorm statistics); the logits must be
    (B, K, *label_shape)."""
    was_training = model.training
    model.eval()
    try:
        out = model(sample)
    except Exception as err:
        raise ValueError(
            f"the model failed on a batch of the training inputs of shape {tuple(sample.shape)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    finally:
        model.train(was_training)
    if (
        not isinstance(out, Tensor)
        or out.dim() != 2 + len(label_shape)
        or out.shape[0] != sample.shape[0]
        or tuple(out.shape[2:]) != tuple(label_shape)
    ):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        want = ", ".join(["B", "K", *map(str, label_shape)])
        raise ValueError(
            f"the model must return logits of shape ({want}); for a batch of {sample.shape[0]} it returned {got}"
        )
    if out.shape[1] < 2:
        raise ValueError(f"the model returns {out.shape[1]} logit per example; classification needs K >= 2")
    return int(out.shape[1])


def _check_label_range(labels: Tensor, k: int, name: str) -> None:
    bad = ((labels < 0) | (labels >= k)).nonzero()
    if len(bad):
        where = ", ".join(str(int(i)) for i in bad[0])
        raise ValueError(
            f"{name} label {int(labels[tuple(bad[0])])} at index {where} is outside [0, {k}) (the model returns {k} "
            f"logits; {len(bad)} such labels)"
        )


def _check_classes(train_labels: Tensor, meta_labels: Tensor, k: int, *, allow_incomplete_meta: bool) -> None:
    """The meta set holds every class (as ``l2b train`` checks it; a warning with
    `allow_incomplete_meta`), and every class it holds has a training example."""
    meta = meta_labels.cpu().numpy().ravel()  # per-pixel labels: every class somewhere in the meta masks
    check_meta_set(meta, num_classes=k, allow_incomplete=allow_incomplete_meta, source="l2b.fit meta")
    untrained = np.setdiff1d(meta, train_labels.cpu().numpy())
    if untrained.size:
        shown = ", ".join(str(int(c)) for c in untrained[:10]) + (" ..." if untrained.size > 10 else "")
        raise ValueError(
            f"train has no example of class {shown} ({untrained.size} of {k} classes), which the meta set holds: "
            "the model would never train on it; move some of its examples from meta to train, or leave the "
            "class out of both"
        )
