"""One complete experiment from a TrainConfig: data, noise, meta split, model, training, outputs.

Run directory layout::

    config.yaml        the resolved config, the package and torch versions
    metrics.jsonl      one JSON record per epoch
    summary.json       the final figures (see :func:`run_experiment`)
    per_example.npz    indices, clean / noisy labels, last-epoch alpha, beta, pseudo-labels
    model.pt           the state dict of the epoch selected on the clean meta set
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .. import __version__
from ..data import class_balanced_split, load_dataset
from ..methods import create_method
from ..models import create_model
from ..noise import make_noise
from .config import TrainConfig
from .trainer import TensorData, Trainer, evaluate


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available")
    return dev


def run_experiment(config: TrainConfig, *, out_dir: str | Path | None = None, progress: bool = True,
                   log=print) -> dict[str, Any]:
    """Train one model as `config` says and return its summary.

    Summary keys: method, data, noise, noise_rate (requested), realised_noise_rate, epochs, seed,
    num_meta, test_accuracy (final epoch), best_meta_epoch, best_meta_accuracy,
    test_accuracy_at_best_meta (the checkpoint selected on the clean meta set), seconds,
    train_seconds, zero_weight_steps, version, torch, device.

    The global torch RNG is forked and seeded with `config.seed` for the duration of the run (model
    initialisation, dropout), and restored afterwards; all sampling uses explicit generators.
    """
    device = resolve_device(config.device)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        if (out / "summary.json").exists():
            raise FileExistsError(f"run directory {out} already holds a finished run (summary.json); "
                                  "choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        meta_info = {"version": __version__, "torch": str(torch.__version__), "python": platform.python_version(),
                     "device": str(device)}
        (out / "config.yaml").write_text(yaml.safe_dump({"config": config.to_dict(), "run": meta_info},
                                                         sort_keys=False))
        (out / "metrics.jsonl").write_text("")
    started = time.perf_counter()

    train, test = load_dataset(config.data, test_fraction=config.test_fraction, split_seed=config.split_seed)
    noisy = make_noise(config.noise, train.labels, rate=config.noise_rate, num_classes=train.num_classes,
                       seed=config.seed)
    # The meta set is class-balanced on the true labels and keeps them: it is the trusted subset.
    meta_idx, train_idx = (class_balanced_split(train.labels, num_selected=config.num_meta,
                                                num_classes=train.num_classes, seed=config.seed + 1)
                           if config.num_meta > 0 else (np.array([], dtype=np.int64), np.arange(len(train))))

    def tensors(x: np.ndarray, y: np.ndarray) -> TensorData:
        return TensorData(torch.as_tensor(x, device=device), torch.as_tensor(y, device=device))

    train_t = tensors(train.inputs[train_idx], noisy.labels[train_idx])
    meta_t = tensors(train.inputs[meta_idx], train.labels[meta_idx]) if len(meta_idx) else None
    test_t = tensors(test.inputs, test.labels)
    clean_train = train.labels[train_idx]
    realised = float(np.mean(noisy.labels[train_idx] != clean_train))

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model_kw = {"hidden": config.hidden} if config.model == "mlp" else {}
        model = create_model(config.model, num_classes=train.num_classes, in_shape=train.example_shape,
                             **model_kw).to(device)
        method = create_method(config.method, **config.method_options())
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay, nesterov=config.nesterov)
        steps_per_epoch = max(1, -(-len(train_t) // config.batch_size))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)

        def on_epoch(record: dict[str, Any]) -> None:
            if out is not None:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            if log is not None:
                parts = [f"epoch {record['epoch']:3d}/{config.epochs} [{record['phase']}]",
                         f"loss {record['train_loss']:.4f}"]
                parts += [f"{k.replace('_accuracy', ' acc')} {record[k]:.4f}"
                          for k in ("meta_accuracy", "test_accuracy") if k in record]
                if "alpha_noisy" in record:
                    parts.append(f"alpha clean/noisy {record['alpha_clean']:.2f}/{record['alpha_noisy']:.2f}")
                parts.append(f"{record['images_per_second']:.0f} img/s")
                log("  ".join(parts))

        trainer = Trainer(model, method, optimizer, scheduler, num_classes=train.num_classes,
                          batch_size=config.batch_size, meta_batch_size=config.meta_batch_size,
                          warmup_epochs=config.warmup_epochs,
                          generator=torch.Generator().manual_seed(config.seed + 2),
                          progress=progress, callbacks=(on_epoch,))
        result = trainer.fit(train_t, meta_t, epochs=config.epochs, test=test_t, clean_labels=clean_train)

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
        "seconds": round(time.perf_counter() - started, 3),
        "train_seconds": round(sum(r["train_seconds"] for r in result.history), 3),
        "zero_weight_steps": int(sum(r.get("zero_weight_steps", 0) for r in result.history)),
        "version": __version__, "torch": str(torch.__version__), "device": str(device),
    }
    if out is not None:
        torch.save(result.best_state, out / "model.pt")
        np.savez_compressed(out / "per_example.npz", index=train_idx, clean_label=clean_train,
                            given_label=noisy.labels[train_idx], alpha=result.per_example.alpha,
                            beta=result.per_example.beta, pseudo_label=result.per_example.pseudo_labels,
                            meta_index=meta_idx)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
