"""The SimCLR loop of ``l2b pretrain``: two strong views per image, a projection head on the
model's features, NT-Xent, SGD with a cosine schedule; checkpoints at every epoch and at an
interrupt (Ctrl-C), from which ``--resume`` continues exactly."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..data.autoaugment import StrongAugment
from ..data.preprocessing import preprocessing_of
from ..methods.unicon import nt_xent
from ..models import create_model
from ..models.projection import ProjectionHead, feature_width, features_of
from ..rundir import (
    CHECKPOINT,
    ENCODER,
    append_metrics,
    load_checkpoint,
    lock_run_dir,
    prepare_run_dir,
    refuse_existing_run,
    save_checkpoint,
    write_metrics,
    write_run_config,
)
from ..training.init_weights import save_safetensors
from ..training.optim import batches_per_epoch, sgd_with_cosine
from ..training.setup import resolve_device
from . import PretrainConfig

__all__ = ["ENCODER", "pretrain"]


def _images(config: PretrainConfig):
    """The training split's images as one (N, C, H, W) float tensor, their statistics, and the
    number of classes (for the model's classifier, which pre-training leaves as initialised).
    The split is the one ``l2b train --data ...`` uses by default: a benchmark's held-out test
    split stays unseen; a user's folder of unchecked labels is used whole."""
    from ..training.config import TrainConfig
    from ..training.prepare import load_run_data, train_subset_index

    like_train = TrainConfig(
        data=config.data,
        data_root=config.data_root,
        data_options=dict(config.data_options),
        method="ce",
        warmup_epochs=0,
        split_seed=config.split_seed,
    )
    train, _ = load_run_data(like_train, training=True)
    if config.train_subset is not None:  # the images l2b train --train-subset trains on (with its meta set)
        if config.train_subset > len(train):
            raise ValueError(
                f"pretrain train_subset={config.train_subset} is larger than the training split of "
                f"{config.data!r} ({len(train)} images)"
            )
        train = train.subset(train_subset_index(train, config.train_subset, config.split_seed))
    inputs = getattr(train, "inputs", None)
    prep = preprocessing_of(train)
    if inputs is None or prep is None or inputs.ndim != 4:
        shape = None if inputs is None else tuple(inputs.shape[1:])
        raise ValueError(
            f"l2b pretrain draws strong views of images held in memory; data set {config.data!r} gives "
            f"{'streamed files (set --no-lazy and --image-size)' if inputs is None else f'inputs of shape {shape}'}"
        )
    return torch.as_tensor(inputs), prep, int(train.num_classes)


@contextmanager
def _deferred_interrupt():
    """Ctrl-C (SIGINT) in the main thread sets ``requested`` instead of stopping mid-step; the
    loop checkpoints at the step's end and stops there. A second Ctrl-C stops at once (the last
    checkpoint, a consistent one, stays)."""
    flag = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["requested"]:
            raise KeyboardInterrupt
        flag["requested"] = True

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old)


def pretrain(
    config: PretrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Pre-train `config.model` on `config.data`'s training images with SimCLR; write the run
    directory `out_dir` (config.yaml, metrics.jsonl, checkpoint.pt, encoder.safetensors,
    summary in the return value). ``resume=True`` continues from the directory's checkpoint,
    exactly as the uninterrupted run would have gone on."""
    out = Path(out_dir)
    if not resume:
        refuse_existing_run(out)  # a finished run's files, or a user's own, are never written over
    prepare_run_dir(out)
    with lock_run_dir(out):  # one process writes the directory, as with l2b train
        if not resume:
            refuse_existing_run(out)  # again, now that it is ours: another run may have made it meanwhile
        return _pretrain(config, out, resume=resume, progress=progress, log=log)


def _pretrain(
    config: PretrainConfig, out: Path, *, resume: bool, progress: bool, log: Callable[[str], None] | None
) -> dict[str, Any]:
    """:func:`pretrain`'s work, in the run directory `out` that this process owns."""
    device = resolve_device(config.device)
    x_all, prep, num_classes = _images(config)
    n = x_all.shape[0]
    if n < 2:
        raise ValueError(f"data set {config.data!r} has {n} training image; pre-training needs at least 2")
    torch.manual_seed(config.seed)
    model = create_model(
        config.model, num_classes=num_classes, in_shape=tuple(x_all.shape[1:]), **config.model_options
    ).to(device)
    projection = ProjectionHead(feature_width(model), config.projection_dim).to(device)
    params = [*model.parameters(), *projection.parameters()]
    batch = min(config.batch_size, n)
    optimizer, scheduler = sgd_with_cosine(
        params,
        lr=config.lr * batch / 256,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=False,
        epochs=config.epochs,
        num_examples=n,
        batch_size=batch,
    )
    strong = StrongAugment(prep.mean, prep.std)
    generator = torch.Generator().manual_seed(config.seed + 2)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "perm": None, "losses": [], "seconds": 0.0, "history": []}
    if resume:
        ckpt = load_checkpoint(out / CHECKPOINT)
        if ckpt.get("config") != config.to_dict():
            raise ValueError(f"{out / CHECKPOINT} was written by a pre-training run with another config")
        model.load_state_dict(ckpt["model"])
        projection.load_state_dict(ckpt["projection"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        generator.set_state(ckpt["generator"])
        state = ckpt["state"]
        write_metrics(out, state["history"])
    else:
        run_info = {"l2b": __version__, "torch": str(torch.__version__), "command": "pretrain"}
        write_run_config(out, config.to_dict(), run_info)
        write_metrics(out, [])

    def save() -> None:
        payload = {
            "config": config.to_dict(),
            "model": model.state_dict(),
            "projection": projection.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "state": state,
        }
        save_checkpoint(out, payload, resume=f"l2b pretrain --resume --out {out}")

    steps = batches_per_epoch(n, batch)
    model.train()
    projection.train()
    with _deferred_interrupt() as stop:
        while state["epoch"] < config.epochs:
            if state["perm"] is None:  # a new epoch (a resumed one keeps its order)
                state["perm"], state["step"], state["losses"], state["seconds"] = (
                    torch.randperm(n, generator=generator),
                    0,
                    [],
                    0.0,
                )
            rows = torch.tensor_split(state["perm"], steps)
            bar = tqdm(
                total=steps,
                initial=state["step"],
                desc=f"epoch {state['epoch'] + 1}",
                disable=not progress,
                leave=False,
            )
            try:
                while state["step"] < steps:
                    if stop["requested"]:  # Ctrl-C arrived during the last step: checkpoint at its end
                        save()
                        raise KeyboardInterrupt
                    t0 = time.perf_counter()
                    x = x_all[rows[state["step"]]].to(device)
                    v1, v2 = strong(x, generator=generator), strong(x, generator=generator)
                    z1 = projection(features_of(model, v1))
                    z2 = projection(features_of(model, v2))
                    loss = nt_xent(z1, z2, temperature=config.temperature)
                    if not math.isfinite(float(loss.detach())):
                        raise FloatingPointError(
                            f"pre-training loss is {float(loss)} at epoch {state['epoch'] + 1}, "
                            f"step {state['step'] + 1}: lower --lr"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    state["losses"].append(float(loss.detach()))
                    state["seconds"] += time.perf_counter() - t0
                    state["step"] += 1
                    bar.update(1)
            finally:
                bar.close()
            record = {
                "epoch": state["epoch"] + 1,
                "loss": float(sum(state["losses"]) / len(state["losses"])),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(state["seconds"], 4),
                "images_per_second": round(n / max(state["seconds"], 1e-9), 1),
            }
            state["history"].append(record)
            state["epoch"], state["perm"] = state["epoch"] + 1, None
            append_metrics(out, record)
            if log is not None:
                log(f"epoch {record['epoch']:3d}/{config.epochs}  loss {record['loss']:.4f}  {record['seconds']:.1f}s")
            save()
    # The header names the model, so that a mismatched --init-weights is told which one to train.
    made_for = {"l2b_model": config.model, "l2b_model_options": json.dumps(config.model_options, sort_keys=True)}
    save_safetensors(model.state_dict(), out / ENCODER, metadata=made_for)
    seconds = [r["seconds"] for r in state["history"]]
    return {
        "epochs": config.epochs,
        "images": n,
        "final_loss": state["history"][-1]["loss"],
        "seconds_per_epoch": float(sum(seconds) / len(seconds)),
        "encoder": str(out / ENCODER),
    }
