"""One complete experiment from a TrainConfig: data, model, training, and the run directory.

The data come from :func:`~l2b.training.prepare_data`, the model and trainer from
:mod:`l2b.training.setup`, and every file of the run directory is named and written by
:mod:`l2b.rundir` (its docstring gives the layout).
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__, rundir
from ..data.trusted import dataset_paths, files_fingerprint
from ..distributed import DistContext, barrier, broadcast_object
from ..reports.issues import write_label_issues
from ..tasks import get_task
from .config import TrainConfig
from .init_weights import save_safetensors
from .optim import batches_per_epoch
from .prepare import PreparedData, prepare_data
from .progress import format_epoch
from .setup import (
    build_augmentation,
    build_model,
    build_strong_augmentation,
    check_model_output,
    effective_meta_batch,
    resolve_device,
    seeded,
    trainer_for_config,
)
from .trainer import FitResult, predict_proba
from .validation import check_state_fits

__all__ = ["RESUME_MAY_CHANGE", "run_experiment"]

#: Config keys a resumed run may change: how it runs, not what it computes (DataLoader workers).
#: Every other key must be the run's own; ``device`` too, since another device gives other numbers
#: than the uninterrupted run would have.
RESUME_MAY_CHANGE = ("workers",)


def run_experiment(
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    resume: bool = False,
    tensorboard: bool = False,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Train one model as `config` says and return its summary.

    With ``tensorboard=True`` every epoch record's numbers are also written as TensorBoard scalars
    to ``<out_dir>/tensorboard`` (needs the optional ``tensorboard`` package).

    With ``resume=True``, `out_dir` must hold a checkpoint of a run started with the same config;
    training continues from it (mid-epoch if it was interrupted there) and finishes as the
    uninterrupted run would have (same data, same random draws, same metrics).

    Summary keys: method, data, model, noise, noise_rate (requested; None for noise from a file),
    realised_noise_rate, epochs, seed, num_meta, test_accuracy (final epoch), best_meta_epoch,
    best_meta_accuracy, test_accuracy_at_best_meta (the checkpoint selected on the clean meta
    set), seconds, train_seconds, zero_weight_steps, resumed (times), version, torch, device.

    With `dist` (a :class:`l2b.distributed.DistContext`, e.g. from ``torchrun``), the run is one of
    ``dist.world_size`` data-parallel processes (see :class:`~l2b.training.trainer.Trainer`);
    ``batch_size`` and ``meta_batch_size`` are global. Every process reads the data and, when
    resuming, the checkpoint; rank 0 alone logs and writes the run directory.

    The global torch RNG is forked for the duration of the run (see :mod:`l2b.training.setup`
    for every seed) and restored afterwards; all sampling uses explicit generators.

    The process that writes the run directory owns it while the run lasts (an flock on
    ``run.lock``, see :func:`l2b.rundir.lock_run_dir`): a second run on the same directory, new or
    resumed, is refused with :class:`l2b.rundir.RunDirectoryLocked` naming the holder.
    """
    with contextlib.ExitStack() as held:  # the run directory's lock, released however the run ends
        return _run_experiment(
            config,
            out_dir=out_dir,
            progress=progress,
            log=log,
            resume=resume,
            tensorboard=tensorboard,
            dist=dist,
            held=held,
        )


def _run_experiment(
    config: TrainConfig,
    *,
    out_dir: str | Path | None,
    progress: bool,
    log: Callable[[str], None] | None,
    resume: bool,
    tensorboard: bool,
    dist: DistContext | None,
    held: contextlib.ExitStack,
) -> dict[str, Any]:
    device = resolve_device(config.device) if dist is None else dist.device
    main = dist is None or dist.is_main
    if not main:
        log, progress, tensorboard = None, False, False
    world = 1 if dist is None else dist.world_size
    if config.batch_size < 2 * world or config.meta_batch_size < world:
        raise ValueError(
            f"config batch_size={config.batch_size} / meta_batch_size={config.meta_batch_size} are "
            f"global: with {world} processes they must be at least {2 * world} / {world}"
        )
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is not None and out.is_dir():
        _own_run_dir(held, out, main=main, dist=dist)
    ckpt = _checkpoint_to_resume(config, out) if resume else None
    if not resume and out is not None:
        rundir.refuse_existing_run(out)
    started = time.perf_counter()
    elapsed_before = float(ckpt["elapsed"]) if ckpt else 0.0
    resumed = int(ckpt.get("resumed", 0)) + 1 if ckpt else 0

    data = prepare_data(config)
    if ckpt is not None:
        _refuse_changed_files(out, data)  # first: it names the files
    if ckpt is not None and not np.array_equal(ckpt["meta_index"].numpy(), data.meta_idx):
        raise ValueError(f"the data of {out} changed since its checkpoint (the meta split differs); cannot resume")
    # Before the run directory exists: init_weights that do not fit must not leave one behind.
    # A resumed run takes its weights from the checkpoint, not from init_weights.
    model = build_model(
        config, num_classes=data.num_classes, in_shape=data.example_shape, device=device,
        init_weights=ckpt is None, log=log,
    )  # fmt: skip
    check_model_output(model, getattr(data.train, "inputs", None), config.model, task=config.task)
    if config.method_options.get("pseudo_views", 1) != 1 and config.task != "segmentation":  # before the run dir
        raise ValueError(
            f"config pseudo_views={config.method_options['pseudo_views']} is the segmentation variant's five-view "
            f"pseudo-mask; data {config.data!r} holds one class per example (masks: --data masks)"
        )
    meta_batch = effective_meta_batch(config, len(data.meta_idx))
    _refuse_single_example_batches(model, config, data, meta_batch, world)
    # The views a method needs, checked before the run directory exists (a config error must not leave one).
    build_augmentation(config, streamed=data.streamed)
    strong_augment = build_strong_augmentation(config, data.train, data.example_shape)
    if out is not None and not resume:  # only now: bad data must not leave a half-made run directory
        if main:
            rundir.prepare_run_dir(out)
        _own_run_dir(held, out, main=main, dist=dist)
    if out is not None and main and not resume:
        rundir.refuse_existing_run(out)  # again, now that it is ours: another run may have made it meanwhile
        rundir.write_run_config(
            out,
            config.to_dict(),
            {
                "version": __version__,
                "torch": str(torch.__version__),
                "python": platform.python_version(),
                "device": str(device),
            },
        )
        rundir.write_metrics(out, [])
    skipped_list = (
        rundir.write_skipped_files(out, data.skipped_files) if out is not None and main and data.num_skipped else None
    )
    if log is not None and data.num_skipped:
        where = f"; listed with the reasons in {skipped_list}" if skipped_list is not None else ""
        n_train = sum(split == "train" for split, *_ in data.skipped_files)
        log(f"skipped {n_train} training and {data.num_skipped - n_train} test files that could not be decoded{where}")
    if log is not None:
        for note in data.notes:
            log(note)
        if not data.truth_known:
            log(
                "the true labels are unknown (no noise simulated on data of unchecked labels): figures that need "
                "them (noise rate, weights on truly clean / noisy examples, memorised share) are not computed"
            )
    train_t, meta_t, test_t = data.sets(device)
    selection_t = data.selection_set(device)
    if meta_batch < config.meta_batch_size and log is not None:
        log(
            f"meta batch {config.meta_batch_size} is larger than the meta set ({len(data.meta_idx)} examples): "
            f"each meta batch is the whole meta set"
        )
    if out is not None and main and not resume:
        rundir.write_data_info(out, _data_info(data, meta_batch))
        if data.paths is not None:
            rundir.write_files(out, _file_rows(data))
    writer = _tensorboard_writer(out) if tensorboard else None

    def on_epoch(record: dict[str, Any]) -> None:
        if out is not None and main:
            rundir.append_metrics(out, record)
        if writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    writer.add_scalar(key, value, record["epoch"])
            writer.flush()
        if log is not None:
            log(format_epoch(record, config.epochs))

    def save_checkpoint(state: dict[str, Any]) -> None:
        if out is not None and main:
            rundir.save_checkpoint(
                out,
                {
                    "trainer": state,
                    "config": config.to_dict(),
                    "meta_index": torch.from_numpy(data.meta_idx),
                    "elapsed": elapsed_before + time.perf_counter() - started,
                    "resumed": resumed,
                    "version": __version__,
                },
            )

    with seeded(config.seed, device):
        trainer = trainer_for_config(
            config,
            model,
            num_examples=len(train_t),
            num_classes=data.num_classes,
            streamed=data.streamed,
            meta_batch_size=meta_batch,
            strong_augment=strong_augment,
            progress=progress,
            callbacks=(on_epoch,),
            checkpoint=save_checkpoint,
            log=log,
            dist=dist,
            task=config.task,
        )
        if out is not None and main:  # before resuming changes anything in the run directory
            rundir.check_free_space(out, model, num_examples=len(train_t))
        if ckpt is not None:
            _check_checkpoint_fits(ckpt, model, out)
            trainer.load_state_dict(ckpt["trainer"])
            if main:  # keep exactly the epochs the checkpoint knows (a kill can fall between the two writes)
                rundir.write_metrics(out, trainer.history)
            if log is not None:
                step = f", step {trainer.cursor.step + 1}" if trainer.cursor is not None else ""
                log(f"resuming {out} at epoch {trainer.epoch + 1}{step}")
        try:
            result = trainer.fit(
                train_t, meta_t, epochs=config.epochs, test=test_t, clean_labels=data.clean, selection=selection_t
            )
        finally:
            if writer is not None:
                writer.close()

    model.load_state_dict(result.best_state)
    task = get_task(config.task)
    summary = _summary(
        config,
        data,
        result,
        test_scores=None if test_t is None else task.scores(predict_proba(model, test_t), test_t.labels),
        meta_batch_size=meta_batch,
        seconds=elapsed_before + time.perf_counter() - started,
        resumed=resumed,
        device=device,
        processes=world,
    )
    if data.num_skipped:
        summary["skipped_files_list"] = rundir.SKIPPED_FILES if out is not None else None
    if out is not None and main:
        try:
            _write_outputs(out, result, model, summary, data, train_t, trainer.method.per_example_outputs())
        except OSError as err:
            raise OSError(
                err.errno,
                f"could not write the outputs of {out} ({err.strerror or err}); its checkpoint "
                f"is kept: free some space and finish with `{rundir.resume_command(out)}`",
            ) from None
    if dist is not None:
        barrier()  # the run directory is complete before any process returns
    return summary


def _refuse_single_example_batches(
    model: torch.nn.Module, config: TrainConfig, data: PreparedData, meta_batch: int, world: int
) -> None:
    """BatchNorm cannot train on one example: refuse a training batch, a meta batch or a
    torchrun shard of either that would hold a single one, before anything is written. An image
    whose maps keep several values per channel at every BatchNorm (a segmentation network's)
    is enough on its own, as a train-mode forward of one image on a copy of the model shows."""
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    if config.task == "segmentation" and len(data.train_idx):
        first = next(model.parameters())
        probe = copy.deepcopy(model).train()
        one = torch.as_tensor(np.asarray(data.train.inputs[data.train_idx[:1]]), dtype=first.dtype, device=first.device)
        try:
            with torch.no_grad():
                probe(one)
            return
        except ValueError:  # "Expected more than 1 value per channel": the counts below decide
            pass
        finally:
            del probe
    n = len(data.train_idx)
    shards = f" split over {world} processes" if world > 1 else ""
    smallest = n // batches_per_epoch(n, config.batch_size) if n else 0
    # an image trained in several views (the five-view pseudo-mask) is that many examples to BatchNorm,
    # from the first epoch on when there is no warm-up of plain steps
    views = config.method_options.get("pseudo_views", 1) if config.warmup_epochs == 0 else 1
    if smallest * views // world < 2:
        raise ValueError(
            f"with {n} training examples and batch_size={config.batch_size}{shards}, some batches hold a single "
            f"example, which BatchNorm cannot train on; use a larger batch_size (or more training examples)"
        )
    if len(data.meta_idx) and meta_batch // world < 2:
        raise ValueError(
            f"the meta set has {len(data.meta_idx)} example(s) and meta batches of {meta_batch}{shards}: a meta "
            f"batch{' shard' if world > 1 else ''} would hold a single example, which BatchNorm cannot take; give "
            "more trusted examples (two or more per process) or a larger meta_batch_size"
        )


def _refuse_changed_files(out: Path, data: PreparedData) -> None:
    """A resumed run must see the files it started with: the same paths, of the same sizes."""
    info = rundir.read_data_info(out)
    if info is None or "fingerprint" not in info or data.paths is None:
        return
    test = None if data.test is None else dataset_paths(data.test)
    if files_fingerprint(data.paths, test) == info["fingerprint"]:
        return
    recorded = set(rundir.read_files(out, roles=None).values())
    now = set(data.paths) | set(test or ())
    added, gone = sorted(now - recorded), sorted(recorded - now)
    detail = []
    if added:
        detail.append(f"{len(added)} file(s) added (e.g. {added[0]})")
    if gone:
        detail.append(f"{len(gone)} file(s) gone (e.g. {gone[0]})")
    if not detail:  # the same paths, so some size changed: name the files rewritten since the run began
        began = (out / rundir.CONFIG).stat().st_mtime
        rewritten = sorted(p for p in now if os.path.getmtime(p) > began)
        if rewritten:
            detail.append(f"{len(rewritten)} file(s) rewritten since the run began (e.g. {rewritten[0]})")
    raise ValueError(
        f"the files of {out} changed since the run started ({'; '.join(detail) or 'files of other sizes'}): "
        f"an exact resume needs the files listed in {out / rundir.FILES}; put them back, or start a new run"
    )


def _own_run_dir(held: contextlib.ExitStack, out: Path, *, main: bool, dist: DistContext | None) -> None:
    """Rank 0 (the process that writes `out`) takes its lock until `held` closes; under torchrun
    every process learns whether it could, so that all of them stop when it could not."""
    refusal = None
    if main:
        try:
            held.enter_context(rundir.lock_run_dir(out))
        except rundir.RunDirectoryLocked as err:
            refusal = str(err)
    if dist is not None:
        refusal = broadcast_object(refusal)
    if refusal is not None:
        raise rundir.RunDirectoryLocked(refusal)


def _check_checkpoint_fits(ckpt: dict[str, Any], model: torch.nn.Module, out: Path) -> None:
    """A checkpoint whose tensors do not fit the model of the run's config is refused by name."""
    path = out / rundir.CHECKPOINT
    advice = (
        f"it was not written for the model that {out / rundir.CONFIG} describes: put back this run's own "
        "checkpoint, or start the run again without --resume"
    )
    state = ckpt.get("trainer")
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no trainer state; {advice}")
    check_state_fits(state.get("model"), model, source=str(path), advice=advice)
    if state.get("best_state"):
        check_state_fits(state["best_state"], model, source=f"{path} (best epoch's weights)", advice=advice)


def _checkpoint_to_resume(config: TrainConfig, out: Path | None) -> dict[str, Any]:
    """The checkpoint of the unfinished run in `out`, checked against `config`."""
    if out is None:
        raise ValueError("resume needs the run directory")
    if (out / rundir.SUMMARY).exists():
        raise FileExistsError(f"run directory {out} already holds a finished run ({rundir.SUMMARY})")
    path = out / rundir.CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the run stopped before its first checkpoint; start it again without --resume"
        )
    ckpt = rundir.load_checkpoint(path)
    recorded = ckpt.get("config")
    try:  # normalised as config.yaml is: older versions recorded every key
        same = (
            isinstance(recorded, dict)
            and TrainConfig.from_dict(recorded, recorded=True).replace(
                **{key: getattr(config, key) for key in RESUME_MAY_CHANGE}
            )
            == config
        )
    except ValueError:
        same = False
    if not same:
        raise ValueError(f"{path} was written by a run with a different config than {out / rundir.CONFIG}")
    return ckpt


def _summary(
    config: TrainConfig,
    data: PreparedData,
    result: FitResult,
    *,
    test_scores: dict[str, float] | None,
    meta_batch_size: int,
    seconds: float,
    resumed: int,
    device: torch.device,
    processes: int,
) -> dict[str, Any]:
    history = result.history
    summary: dict[str, Any] = {
        "method": config.method,
        "data": config.data,
        "model": config.model,
        "noise": config.noise,
        "noise_rate": config.noise_rate,
        "realised_noise_rate": data.realised_noise_rate,
        "epochs": config.epochs,
        "seed": config.seed,
        "truth_known": data.truth_known,
        "num_meta": len(data.meta_idx),  # the meta set's size as used (a trusted set's own)
        "num_selection": len(data.selection_idx),
        "meta_batch_size": meta_batch_size,
        "test_set": data.sources.get("test"),
        "test_accuracy": history[-1].get("test_accuracy"),
        "best_meta_epoch": result.best_epoch,
        "best_meta_accuracy": history[result.best_epoch - 1].get("meta_accuracy"),
        "best_selection_accuracy": history[result.best_epoch - 1].get("selection_accuracy"),
        "test_accuracy_at_best_meta": None if test_scores is None else test_scores["accuracy"],
        # the highest test accuracy of any epoch: for seeing whether a run fits the noise (its last
        # epoch falling below it), never for choosing a checkpoint
        "peak_test_accuracy": max((r["test_accuracy"] for r in history if "test_accuracy" in r), default=None),
        "seconds": round(seconds, 3),
        "train_seconds": round(sum(r["train_seconds"] for r in history), 3),
        "zero_weight_steps": int(sum(r.get("zero_weight_steps", 0) for r in history)),
        "skipped_steps": int(sum(r.get("skipped_steps", 0) for r in history)),
        "resumed": resumed,
        "meta_source": config.meta_source,
        "skipped_files": data.num_skipped,
        "version": __version__,
        "torch": str(torch.__version__),
        "device": str(device),
        "processes": processes,
    }
    for key in ("train_accuracy", "memorised", "noisy_correct"):  # the last epoch's fit to the given labels
        if key in history[-1]:
            summary[key] = history[-1][key]
    if config.task == "segmentation":  # masks are scored by Dice (per image, mean over foreground classes)
        best = history[result.best_epoch - 1]
        summary["task"] = "segmentation"
        summary["test_dice"] = history[-1].get("test_dice")
        summary["best_meta_dice"] = best.get("meta_dice")
        summary["test_dice_at_best_meta"] = None if test_scores is None else test_scores["dice"]
        summary["test_iou_at_best_meta"] = None if test_scores is None else test_scores["iou"]
        summary["peak_test_dice"] = max((r["test_dice"] for r in history if "test_dice" in r), default=None)
        if data.truth_known:  # the realised noise: the given masks' Dice against the clean ones
            from ..segmentation.metrics import dice_per_image

            dice = dice_per_image(data.given, data.clean, data.num_classes).mean(1)
            summary["realised_mask_dice"] = float(dice.mean()) if len(dice) else None
    purity = [r["meta_purity"] for r in history if "meta_purity" in r]
    if purity:  # confident meta source: how clean the selected meta sets were, on average
        summary["meta_purity"] = float(np.mean(purity))
    return summary


def _write_outputs(
    out: Path,
    result: FitResult,
    model: torch.nn.Module,
    summary: dict[str, Any],
    data: PreparedData,
    train_t,
    method_outputs: dict[str, np.ndarray],
) -> None:
    """model.pt, per_example.npz, label_issues.csv, then summary.json; then the checkpoint goes.
    Until summary.json exists the run counts as unfinished and ``--resume`` writes these again."""
    pe = result.per_example
    prob = predict_proba(model, train_t).cpu().numpy()
    extra = {}
    if data.config.task == "segmentation":  # a map per image and class: half precision halves the file
        prob = prob.astype(np.float16)
        extra["image_size"] = data.train.sizes[data.train_idx]  # (N, 2): masks are written back at it
    if pe.alpha_map is not None and not np.all(np.isnan(pe.alpha_map)):  # per-pixel weights, the last epoch's
        extra.update(alpha_map=pe.alpha_map, beta_map=pe.beta_map)
    torch.save(result.best_state, out / rundir.MODEL)
    np.savez_compressed(
        out / rundir.PER_EXAMPLE,
        index=data.train_idx,
        # -1 where nobody knows the true label (a user's own data): no figure is computed against it
        clean_label=data.clean if data.truth_known else np.full(data.given.shape, -1, np.int64),
        given_label=data.given,
        alpha=pe.alpha,
        beta=pe.beta,
        alpha_mean=pe.alpha_mean,
        beta_mean=pe.beta_mean,
        pseudo_label=pe.pseudo,
        pred_prob=prob,
        meta_index=data.meta_idx,
        transition=data.noisy.transition,
        **extra,
        **method_outputs,  # the method's own per-example arrays (DivideMix: clean_prob)
    )
    save_safetensors(result.best_state, out / rundir.MODEL_SAFETENSORS)  # the same weights, for other tools
    write_label_issues(out)  # label_issues.csv: the examples whose given label looks wrong, ranked
    rundir.write_summary(out, summary)
    # Finished: model.pt holds the selected weights; the resume state is no longer needed.
    (out / rundir.CHECKPOINT).unlink(missing_ok=True)


def _data_info(data: PreparedData, meta_batch_size: int) -> dict[str, Any]:
    """data.json: what the model was trained on, for every later reader of the run (reports,
    evaluate and predict on new files) without loading the data set again."""
    from ..data.preprocessing import preprocessing_of

    prep = preprocessing_of(data.train)
    info: dict[str, Any] = {
        "data": data.config.data,
        "task": data.config.task,
        "class_names": list(data.class_names),
        "num_classes": data.num_classes,
        "example_shape": list(data.example_shape),
        "truth_known": data.truth_known,
        "files": data.paths is not None,
        "num_train": len(data.train_idx),
        "num_meta": len(data.meta_idx),
        "num_selection": len(data.selection_idx),
        "meta_batch_size": meta_batch_size,
        "meta": data.sources.get("meta"),
        "selection": data.sources.get("selection"),
        "test": data.sources.get("test"),
        "num_test": None if data.test is None else len(data.test),
    }
    if data.paths is not None:
        info["fingerprint"] = files_fingerprint(data.paths, None if data.test is None else dataset_paths(data.test))
    if prep is not None:
        info["preprocessing"] = prep.to_dict()  # scale, mean, std, raw: what evaluate / predict re-apply
        size = getattr(data.train, "image_size", None)
        if size is not None:
            info["preprocessing"]["image_size"] = int(size)
    return info


def _file_rows(data: PreparedData) -> list[tuple[int, str, str, str]]:
    """files.csv rows: every example of the pool that is trained on, in the meta set or held out
    for selection, with its file and class (the checked one for meta and selection examples, the
    given one otherwise; for masks, the mask file); then the test set's files (role ``test``,
    index = position in it)."""
    names, paths, labels = data.class_names, data.paths, data.noisy.labels
    if data.config.task == "segmentation":
        return _mask_file_rows(data)
    roles = [(data.train_idx, "train"), (data.meta_idx, "meta"), (data.selection_idx, "selection")]
    meta_label = dict(zip(data.meta_idx.tolist(), data.meta_labels.tolist()))
    meta_label.update(zip(data.selection_idx.tolist(), data.selection_labels.tolist()))
    rows = []
    for idx, role in roles:
        for i in idx.tolist():
            label = meta_label[i] if role in ("meta", "selection") else labels[i]
            rows.append((i, paths[i], names[int(label)], role))
    rows.sort()
    test_paths = None if data.test is None else dataset_paths(data.test)
    if test_paths is not None:  # the test set as it was, so `evaluate` never cuts another one
        rows += [(i, p, names[int(y)], "test") for i, (p, y) in enumerate(zip(test_paths, data.test.labels))]
    return rows


def _mask_file_rows(data: PreparedData) -> list[tuple[int, str, str, str]]:
    """files.csv rows of a mask data set: index, image, its mask file, role."""
    roles = [(data.train_idx, "train"), (data.meta_idx, "meta"), (data.selection_idx, "selection")]
    rows = sorted((i, data.paths[i], data.train.mask_paths[i], role) for idx, role in roles for i in idx.tolist())
    if data.test is not None:
        rows += [(i, p, m, "test") for i, (p, m) in enumerate(zip(data.test.paths, data.test.mask_paths))]
    return rows


def _tensorboard_writer(out: Path | None):
    if out is None:
        raise ValueError("TensorBoard logging needs a run directory")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            "TensorBoard logging needs the tensorboard package: pip install 'l2b[tensorboard]' "
            "(or pip install tensorboard)"
        ) from None
    return SummaryWriter(log_dir=str(out / rundir.TENSORBOARD))
