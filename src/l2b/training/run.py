"""One complete experiment from a TrainConfig: data, noise, meta split, model, training, outputs.

Run directory layout::

    config.yaml        the resolved config, the package and torch versions
    metrics.jsonl      one JSON record per completed epoch
    checkpoint.pt      everything needed to resume (written atomically after every epoch and on Ctrl-C;
                       removed once the run has finished)
    summary.json       the final figures (see :func:`run_experiment`)
    label_issues.csv   the training examples ranked by label quality, suspected label issues flagged
                       (see l2b.reports.issues)
    per_example.npz    per training example: index, clean / given label, last-epoch and mean alpha and
                       beta, pseudo-label, class probabilities of the selected model; the meta indices
                       and the noise transition matrix
    model.pt           the state dict of the epoch selected on the clean meta set
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import inspect
import json
import os
import platform
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from .. import __version__
from ..distributed import DistContext, barrier
from ..data import DATASETS, FileListDataset, class_balanced_split, load_dataset
from ..data.augment import augment_batch
from ..methods import create_method
from ..models import create_model, list_models
from ..reports.issues import write_label_issues
from ..noise import NoisyLabels, instance_dependent_noise, make_noise, noisy_labels_from_file
from .config import TrainConfig
from .meta_sources import confident_meta_set, read_meta_file
from .streams import StreamData
from .validation import load_untrusted_torch, validate_run_data
from .trainer import TensorData, Trainer, evaluate, predict_proba, sgd_with_cosine

CHECKPOINT = "checkpoint.pt"


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available")
    return dev


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Write through `write(file)` to a temporary file beside `path`, then rename over it: a
    crash leaves either the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint without executing code from it (weights_only)."""
    return load_untrusted_torch(path, what="checkpoint")


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig a run directory was started with (from its config.yaml)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not an l2b run directory")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:  # safe_load builds no objects: a python/* tag is refused here
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ValueError(f"{path} has no 'config' mapping")
    return TrainConfig.from_dict(doc["config"], source=str(path))


def run_experiment(config: TrainConfig, *, out_dir: str | Path | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = print, resume: bool = False,
                   tensorboard: bool = False, dist: DistContext | None = None) -> dict[str, Any]:
    """Train one model as `config` says and return its summary.

    With ``tensorboard=True`` every epoch record's numbers are also written as TensorBoard scalars
    to ``<out_dir>/tensorboard`` (needs the optional ``tensorboard`` package).

    With ``resume=True``, `out_dir` must hold a checkpoint of a run started with the same config;
    training continues from it (mid-epoch if it was interrupted there) and finishes as the
    uninterrupted run would have (same data, same random draws, same metrics).

    Summary keys: method, data, model, noise, noise_rate (requested), realised_noise_rate, epochs,
    seed, num_meta, test_accuracy (final epoch), best_meta_epoch, best_meta_accuracy,
    test_accuracy_at_best_meta (the checkpoint selected on the clean meta set), seconds,
    train_seconds, zero_weight_steps, resumed (times), version, torch, device.

    With `dist` (a :class:`l2b.distributed.DistContext`, e.g. from ``torchrun``), the run is one of
    ``dist.world_size`` data-parallel processes (see :class:`~l2b.training.trainer.Trainer`);
    ``batch_size`` and ``meta_batch_size`` are global. Every process reads the data and, when
    resuming, the checkpoint; rank 0 alone logs and writes the run directory.

    The global torch RNG is forked and seeded with `config.seed` for the duration of the run (model
    initialisation, dropout), and restored afterwards; all other sampling uses explicit generators.
    """
    device = resolve_device(config.device) if dist is None else dist.device
    main = dist is None or dist.is_main
    if not main:
        log, progress, tensorboard = None, False, False
    world = 1 if dist is None else dist.world_size
    if config.batch_size < 2 * world or config.meta_batch_size < world:
        raise ValueError(f"config batch_size={config.batch_size} / meta_batch_size={config.meta_batch_size} are "
                         f"global: with {world} processes they must be at least {2 * world} / {world}")
    method = create_method(config.method, **config.method_options())  # fails early on bad names / options
    if config.augment and config.data == "digits":
        raise ValueError("config augment=True is for image data sets; digits' 8x8 images are too small "
                         "for 4-pixel crops")
    if config.model not in list_models():
        raise ValueError(f"unknown model {config.model!r}; known models: {', '.join(list_models())}")
    out = Path(out_dir) if out_dir is not None else None
    ckpt: dict[str, Any] | None = None
    if resume:
        if out is None:
            raise ValueError("resume needs the run directory")
        if (out / "summary.json").exists():
            raise FileExistsError(f"run directory {out} already holds a finished run (summary.json)")
        if not (out / CHECKPOINT).is_file():
            raise FileNotFoundError(f"{out / CHECKPOINT} not found: the run stopped before its first checkpoint; "
                                    "start it again without --resume")
        ckpt = load_checkpoint(out / CHECKPOINT)
        if ckpt.get("config") != config.to_dict():
            raise ValueError(f"{out / CHECKPOINT} was written by a run with a different config than {out}/config.yaml")
    elif out is not None and ((out / "summary.json").exists() or (out / CHECKPOINT).exists()):
        raise FileExistsError(f"run directory {out} already holds a run; resume it with --resume or choose "
                              "another --out")
    started = time.perf_counter()
    elapsed_before = float(ckpt["elapsed"]) if ckpt else 0.0
    resumed = int(ckpt.get("resumed", 0)) + 1 if ckpt else 0

    train, test = load_dataset(config.data, **dataset_options(config))
    stream = isinstance(train, FileListDataset)
    if stream and config.augment:
        raise ValueError(f"config augment=True is for in-memory images; streamed data set {config.data!r} is already "
                         "augmented by its loader (random resized crop and flip)")
    if stream and config.noise == "instance":
        raise ValueError(f"config noise='instance' needs the images in memory; load {config.data!r} with lazy=False "
                         "(and a small image_size) or choose another noise")
    noisy = _make_noise(config, train.labels, None if stream else train.inputs, train.num_classes)
    if config.train_subset is not None:
        train, noisy = _train_subset(config, train, noisy)
    meta_idx, meta_labels, train_idx = _meta_split(config, train.labels, train.num_classes)
    validate_run_data(config, train, test, meta_labels)
    if ckpt is not None and not np.array_equal(ckpt["meta_index"].numpy(), meta_idx):
        raise ValueError(f"the data of {out} changed since its checkpoint (the meta split differs); cannot resume")

    if out is not None and main and not resume:  # only now: bad data must not leave a half-made run directory
        prepare_run_dir(out)
        run_info = {"version": __version__, "torch": str(torch.__version__), "python": platform.python_version(),
                    "device": str(device)}
        (out / "config.yaml").write_text(yaml.safe_dump({"config": config.to_dict(), "run": run_info},
                                                         sort_keys=False))
        (out / "metrics.jsonl").write_text("")

    writer = _tensorboard_writer(out) if tensorboard else None

    if stream:
        # One pool of files for the training and meta sets, viewed with either transform.
        pool_eval = train.with_transform(test.transform)

        def files(rows: np.ndarray, labels: np.ndarray, pool=train, pool_eval=pool_eval) -> StreamData:
            return StreamData(pool, pool_eval, np.asarray(rows, np.int64), torch.as_tensor(labels, dtype=torch.int64),
                              workers=config.workers, pin_memory=device.type == "cuda")

        train_t = files(train_idx, noisy.labels[train_idx])
        meta_t = files(meta_idx, meta_labels) if len(meta_idx) else None
        test_t = files(np.arange(len(test)), test.labels, pool=test, pool_eval=test)
        in_shape = tuple(test[0][0].shape)
        if log is not None and (train.num_skipped or test.num_skipped):
            log(f"skipped {train.num_skipped} training and {test.num_skipped} test files that could not be decoded")
    else:
        def tensors(x: np.ndarray, y: np.ndarray) -> TensorData:
            return TensorData(torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))

        train_t = tensors(train.inputs[train_idx], noisy.labels[train_idx])
        meta_t = tensors(train.inputs[meta_idx], meta_labels) if len(meta_idx) else None
        test_t = tensors(test.inputs, test.labels)
        in_shape = train.example_shape
    selector = (partial(confident_meta_set, num_meta=config.num_meta, num_classes=train.num_classes)
                if config.meta_source == "confident" else None)
    clean_train = train.labels[train_idx]
    realised = float(np.mean(noisy.labels[train_idx] != clean_train))

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model = create_model(config.model, num_classes=train.num_classes, in_shape=in_shape,
                             **config.model_options()).to(device)
        optimizer, scheduler = sgd_with_cosine(model.parameters(), lr=config.lr, momentum=config.momentum,
                                               weight_decay=config.weight_decay, nesterov=config.nesterov,
                                               epochs=config.epochs, num_examples=len(train_t),
                                               batch_size=config.batch_size)

        def on_epoch(record: dict[str, Any]) -> None:
            if out is not None and main:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            if writer is not None:
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key != "epoch":
                        writer.add_scalar(key, value, record["epoch"])
                writer.flush()
            if log is not None:
                log(format_epoch(record, config.epochs))

        def save_checkpoint(state: dict[str, Any]) -> None:
            if out is None or not main:
                return
            payload = {"trainer": state, "config": config.to_dict(), "meta_index": torch.from_numpy(meta_idx),
                       "elapsed": elapsed_before + time.perf_counter() - started, "resumed": resumed,
                       "version": __version__}
            try:
                atomic_write_bytes(out / CHECKPOINT, lambda f: torch.save(payload, f))
            except OSError as err:
                raise OSError(err.errno, f"could not write the checkpoint {out / CHECKPOINT} ({err.strerror or err}); "
                              "the previous checkpoint, if any, is unchanged: free some space and continue with "
                              f"`l2b train --resume {out}`") from None

        trainer = Trainer(model, method, optimizer, scheduler, num_classes=train.num_classes,
                          batch_size=config.batch_size, meta_batch_size=config.meta_batch_size,
                          warmup_epochs=config.warmup_epochs,
                          generator=torch.Generator().manual_seed(config.seed + 2),
                          progress=progress, callbacks=(on_epoch,), checkpoint=save_checkpoint,
                          meta_selector=selector, augment=augment_batch if config.augment else None,
                          max_bad_steps=config.max_bad_steps, log=log, dist=dist)
        if ckpt is not None:
            trainer.load_state_dict(ckpt["trainer"])
            # Keep exactly the epochs the checkpoint knows (a kill can fall between the two writes).
            if main:
                (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trainer.history))
            if log is not None:
                where = f"epoch {trainer.epoch + 1}" + (f", step {trainer.cursor['step'] + 1}" if trainer.cursor else "")
                log(f"resuming {out} at {where}")
        if out is not None and main:
            check_free_space(out, model, num_examples=len(train_t))
        try:
            result = trainer.fit(train_t, meta_t, epochs=config.epochs, test=test_t, clean_labels=clean_train)
        finally:
            if writer is not None:
                writer.close()

    final = result.history[-1]
    model.load_state_dict(result.best_state)
    best_record = result.history[result.best_epoch - 1]
    summary: dict[str, Any] = {
        "method": config.method, "data": config.data, "model": config.model, "noise": config.noise,
        "noise_rate": config.noise_rate, "realised_noise_rate": realised, "epochs": config.epochs,
        "seed": config.seed, "num_meta": config.num_meta,
        "test_accuracy": final["test_accuracy"],
        "best_meta_epoch": result.best_epoch,
        "best_meta_accuracy": best_record.get("meta_accuracy"),
        "test_accuracy_at_best_meta": evaluate(model, test_t)[0],
        "seconds": round(elapsed_before + time.perf_counter() - started, 3),
        "train_seconds": round(sum(r["train_seconds"] for r in result.history), 3),
        "zero_weight_steps": int(sum(r.get("zero_weight_steps", 0) for r in result.history)),
        "skipped_steps": int(sum(r.get("skipped_steps", 0) for r in result.history)),
        "resumed": resumed, "meta_source": config.meta_source,
        "skipped_files": int(getattr(train, "num_skipped", 0) + getattr(test, "num_skipped", 0)),
        "version": __version__, "torch": str(torch.__version__), "device": str(device), "processes": world,
    }
    purity = [r["meta_purity"] for r in result.history if "meta_purity" in r]
    if purity:  # confident meta source: how clean the selected meta sets were, on average
        summary["meta_purity"] = float(np.mean(purity))
    if out is not None and main:
        try:
            _write_outputs(out, result, model, summary, train_idx, clean_train, noisy, meta_idx,
                           train_t if stream else train_t.inputs)
        except OSError as err:
            raise OSError(err.errno, f"could not write the outputs of {out} ({err.strerror or err}); its checkpoint "
                          f"is kept: free some space and finish with `l2b train --resume {out}`") from None
    if dist is not None:
        barrier()  # the run directory is complete before any process returns
    return summary


def _write_outputs(out: Path, result, model, summary: dict[str, Any], train_idx: np.ndarray, clean_train: np.ndarray,
                   noisy: NoisyLabels, meta_idx: np.ndarray, train_inputs) -> None:
    """model.pt, per_example.npz, label_issues.csv, then summary.json; then the checkpoint goes.
    Until summary.json exists the run counts as unfinished and ``--resume`` writes these again."""
    pe = result.per_example
    torch.save(result.best_state, out / "model.pt")
    np.savez_compressed(out / "per_example.npz", index=train_idx, clean_label=clean_train,
                        given_label=noisy.labels[train_idx], alpha=pe.alpha, beta=pe.beta,
                        alpha_mean=pe.alpha_mean, beta_mean=pe.beta_mean, pseudo_label=pe.pseudo,
                        pred_prob=predict_proba(model, train_inputs).cpu().numpy(),
                        meta_index=meta_idx, transition=noisy.transition)
    write_label_issues(out)  # label_issues.csv: the examples whose given label looks wrong, ranked
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # Finished: model.pt holds the selected weights; the resume state is no longer needed.
    (out / CHECKPOINT).unlink(missing_ok=True)


def prepare_run_dir(out: Path) -> None:
    """Create the run directory and prove it writable, before any training starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".l2b-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise OSError(err.errno, f"cannot write to the run directory {out}: {err.strerror or err}") from None


def check_free_space(out: Path, model: torch.nn.Module, *, num_examples: int) -> None:
    """Refuse to start when the disk of `out` cannot hold two checkpoints (the old one stays
    until the new one is complete) plus the final outputs."""
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # model, momentum, best state; per-example statistics; model.pt and per_example.npz at the end.
    checkpoint = 3 * state_bytes + 64 * num_examples + (1 << 20)
    need = 2 * checkpoint + state_bytes + 64 * num_examples
    free = shutil.disk_usage(out).free
    if free < need:
        raise OSError(errno.ENOSPC, f"only {free / 2**20:.1f} MiB free on the disk of {out}; this run needs about "
                      f"{need / 2**20:.1f} MiB (two checkpoints while one replaces the other, and the outputs)")


def _train_subset(config: TrainConfig, train, noisy: NoisyLabels):
    """The class-balanced subset of `config.train_subset` training examples (drawn with
    split_seed, on the clean labels) and their noisy labels, generated on the whole split."""
    if config.train_subset > len(train):
        raise ValueError(f"config train_subset={config.train_subset} is larger than the training split "
                         f"({len(train)} examples)")
    idx, _ = class_balanced_split(train.labels, num_selected=config.train_subset, num_classes=train.num_classes,
                                  seed=config.split_seed, allow_incomplete=True)
    labels = noisy.labels[idx]
    mask = labels != train.labels[idx]
    return train.subset(idx), dataclasses.replace(noisy, labels=labels, noise_mask=mask,
                                                  noise_rate=float(mask.mean()))


IMAGE_OPTIONS = ("image_size", "lazy", "skip_bad_files")


def dataset_options(config: TrainConfig, name: str | None = None) -> dict[str, Any]:
    """Keyword arguments for :func:`l2b.data.load_dataset` that `config` implies for data set
    `name` (default: the config's own): the split, the root, and the image-file options that are set.

    Raises ValueError when an image-file option is set for a data set whose loader has no such
    option (digits, CIFAR, idx files are arrays already).
    """
    name = config.data if name is None else name
    opts: dict[str, Any] = {"test_fraction": config.test_fraction, "split_seed": config.split_seed}
    if name != config.data:
        return opts
    if config.data_root is not None:
        opts["root"] = config.data_root
    for key in IMAGE_OPTIONS:
        value = getattr(config, key)
        if value is None or value is False:
            continue
        if name in DATASETS and key not in inspect.signature(DATASETS[name]).parameters:
            raise ValueError(f"config {key}={value!r} does not apply to data set {name!r}; it is for image-file "
                             "data sets (imagefolder, csv, isic2019, clothing1m)")
        opts[key] = value
    return opts


def _make_noise(config: TrainConfig, clean: np.ndarray, inputs: np.ndarray | None, num_classes: int) -> NoisyLabels:
    """The training labels the run learns from: synthetic noise, instance-dependent noise, or a
    file of real noisy labels (aligned with the training split's order)."""
    if config.noise == "file":
        try:
            return noisy_labels_from_file(clean, config.noise_file, key=config.noise_label, num_classes=num_classes)
        except ValueError as err:  # the library says `key`; the config and the CLI call it noise_label
            raise ValueError(f"{err} (config noise_label / --noise-label)") from None
    if config.noise == "instance":
        return instance_dependent_noise(clean, inputs, rate=config.noise_rate, num_classes=num_classes,
                                        seed=config.seed)
    return make_noise(config.noise, clean, rate=config.noise_rate, num_classes=num_classes, seed=config.seed)


def _meta_split(config: TrainConfig, clean: np.ndarray, num_classes: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(meta indices (M,), their trusted labels (M,), remaining training indices) per meta_source.

    ``split``: class-balanced on the true labels, which it keeps (the trusted subset). ``file``:
    the listed examples, with the file's labels or else the data set's own. ``confident``: no
    fixed meta set (the trainer selects one every epoch); everything stays in training.
    """
    empty = np.array([], dtype=np.int64)
    if config.meta_source == "confident" or config.num_meta == 0 and config.meta_source == "split":
        return empty, empty, np.arange(len(clean))
    if config.meta_source == "file":
        idx, labels = read_meta_file(config.meta_file, num_examples=len(clean), num_classes=num_classes)
        order = np.argsort(idx)
        idx = idx[order]
        labels = clean[idx] if labels is None else labels[order]
    else:
        idx, _ = class_balanced_split(clean, num_selected=config.num_meta, num_classes=num_classes,
                                      seed=config.seed + 1, allow_incomplete=config.allow_incomplete_meta)
        labels = clean[idx]
    return idx, labels, np.setdiff1d(np.arange(len(clean)), idx).astype(np.int64)


def _tensorboard_writer(out: Path | None):
    if out is None:
        raise ValueError("TensorBoard logging needs a run directory")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("TensorBoard logging needs the tensorboard package: pip install 'l2b[tensorboard]' "
                         "(or pip install tensorboard)") from None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One human-readable line per epoch."""
    parts = [f"epoch {record['epoch']:3d}/{epochs} [{record['phase']}]", f"loss {record['train_loss']:.4f}"]
    parts += [f"{k.replace('_accuracy', ' acc')} {record[k]:.4f}" for k in ("meta_accuracy", "test_accuracy") if k in record]
    if "alpha_noisy" in record:
        parts.append(f"alpha clean/noisy {record['alpha_clean']:.2f}/{record['alpha_noisy']:.2f}")
    if record.get("skipped_steps"):
        parts.append(f"{record['skipped_steps']} non-finite steps skipped")
    parts.append(f"{record['images_per_second']:.0f} img/s")
    return "  ".join(parts)
