"""Does a larger meta batch or meta set make the L2B weights tell mislabelled examples apart?

    python benchmarks/studies/meta_batch_study.py --data-root /tmp/cifar      # the recorded run, 1 thread
    python benchmarks/studies/meta_batch_study.py --protocol fashion-mnist   # the cheaper check
    python benchmarks/studies/meta_batch_study.py --quick --out-prefix /tmp/mb  # smoke test: digits, seconds

(/tmp/cifar holds cifar-10-batches-py: ``python ../shared/data/cifar10/prepare.py /tmp/cifar``.)

The protocol is the memorisation-regime CIFAR-10 grid's (benchmarks/grids/cifar10-memorise.yaml)
at 40 % symmetric noise: 2,000 noisy training images, 1,000 clean meta images, fast_cnn, crop +
flip, 150 epochs, L2B with meta batch = batch (128). One seed-0 run goes through the library's one
path (prepare_data, build_model, trainer_for_config). At checkpoints early (the end of the warm-up),
middle and late (the second-to-last epoch: the cosine lr is 0 after the last), the run's own model
and optimizer score every training example once (the epoch cut into batches of 128, given labels,
no augmentation) with each combination of

- meta batch 100, 128 (= batch) and 256, each noisy batch with its own draw from the meta set;
- meta set 500, 1,000 and 2,000 clean images: a class-balanced half of the run's meta set, the
  run's meta set, and the run's meta set plus 1,000 class-balanced clean images from the rest of
  CIFAR-10's training split (none of them in the run's training or test data).

Reported per checkpoint and combination: the average precision (AP) of finding the mislabelled
examples by low alpha (the clamped, normalised weight on the given label), by low raw
(pre-clamp) observed-label score, and by the model's low probability of the given label (the same
for every combination; chance = the noise rate); mean alpha on clean and on mislabelled
examples; and the cost: thread CPU seconds per meta_weights call, and per plain CE step on the same
batch, measured side by side (the ratio is what to read; the machine is shared).

``--protocol fashion-mnist`` does the same on the Fashion-MNIST memorisation-regime grid's
protocol (benchmarks/grids/fashion-mnist-memorise.yaml: 5,000 noisy images, MLP, 100 epochs).

Nothing is trained by the measurement (meta_weights changes neither model nor optimizer). Writes
<out-prefix>.json (every number, the command, machine and torch version) and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from l2b import TrainConfig, meta_weights
from l2b.data.splits import class_balanced_split
from l2b.training import build_model, evaluate, predict_proba, prepare_data, trainer_for_config
from l2b.training.prepare import load_run_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common  # noqa: E402

META_BATCHES = (100, 128, 256)
META_SETS = (500, 1000, 2000)
CIFAR = dict(
    data="cifar10",
    train_subset=3000,
    model="fast_cnn",
    width=16,
    augment=True,
    epochs=150,
    warmup_epochs=10,
    batch_size=128,
    num_meta=1000,
    meta_batch_size=128,
    lr=0.1,
    noise="symmetric",
    noise_rate=0.4,
    method="l2b",
    seed=0,
    device="cpu",
    test_every=10,
)
CHECKPOINTS = (10, 75, 149)
# The cheaper check: the Fashion-MNIST memorisation-regime grid's protocol
# (benchmarks/grids/fashion-mnist-memorise.yaml) at 40 % symmetric noise.
FASHION = {
    **CIFAR,
    **dict(data="fashion-mnist", train_subset=6000, model="mlp", hidden=(256,), augment=False, epochs=100),
}
del FASHION["width"]
FASHION_CHECKPOINTS = (10, 50, 99)
QUICK = dict(
    data="digits", model="mlp", hidden=(64,), epochs=4, warmup_epochs=1, batch_size=64, num_meta=200, device="cpu"
)


def extra_meta(config: TrainConfig, count: int, seed: int = 99) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` class-balanced clean examples of the training split outside the run's training
    subset (so outside its training and meta data), with their true labels."""
    full, _ = load_run_data(config)
    labels = np.asarray(full.labels)
    used, _ = class_balanced_split(
        labels,
        num_selected=config.train_subset,
        num_classes=full.num_classes,
        seed=config.split_seed,
        allow_incomplete=True,
    )  # fmt: skip  - the subset prepare_data takes
    rest = np.setdiff1d(np.arange(len(labels)), used)
    pick, _ = class_balanced_split(labels[rest], num_selected=count, num_classes=full.num_classes, seed=seed)
    idx = rest[pick]
    return torch.as_tensor(np.asarray(full.inputs[idx])), torch.as_tensor(labels[idx])


def meta_sets(meta, extra: tuple[torch.Tensor, torch.Tensor] | None, num_classes: int, seed: int) -> dict[int, tuple]:
    """Meta set size -> (inputs, labels): half of the run's meta set, all of it, and with `extra`."""
    x, y = meta.inputs, meta.labels
    half, _ = class_balanced_split(y.numpy(), num_selected=len(y) // 2, num_classes=num_classes, seed=seed)
    out = {len(y) // 2: (x[half], y[half]), len(y): (x, y)}
    if extra is not None:
        out[len(y) + len(extra[1])] = (torch.cat([x, extra[0]]), torch.cat([y, extra[1]]))
    return out


def score(model, optimizer, train, noisy: np.ndarray, sets: dict[int, tuple], meta_batches, batch: int, seed: int):
    """Every combination's alpha and raw scores over one pass of the training set, and its cost."""
    n = len(train)
    order = np.arange(n)
    batches = [order[i : i + batch] for i in range(0, n, batch)]
    probs = predict_proba(model, train).cpu()
    p_given = probs[torch.arange(n), train.labels].numpy()
    ce_seconds = []
    for idx in batches[:4]:  # a plain CE step's cost on the same batches, side by side (no update kept)
        t0 = time.thread_time()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(train.inputs[idx]), train.labels[idx]).backward()
        ce_seconds.append(time.thread_time() - t0)
    model.zero_grad(set_to_none=True)
    rows = []
    for size, (mx, my) in sets.items():
        for mb in meta_batches:
            g = torch.Generator().manual_seed(seed + size + mb)
            alpha, raw, seconds = np.zeros(n), np.zeros(n), []
            for idx in batches:
                pick = torch.randperm(len(my), generator=g)[: min(mb, len(my))]
                t0 = time.thread_time()
                mw = meta_weights(
                    model, train.inputs[idx], train.labels[idx], mx[pick], my[pick], optimizer, method="l2b"
                )
                seconds.append(time.thread_time() - t0)
                alpha[idx], raw[idx] = mw.alpha.numpy(), mw.raw[0].numpy()
            rows.append(
                {
                    "meta_set": size,
                    "meta_batch": min(mb, len(my)),
                    "ap_alpha": float(average_precision_score(noisy, -alpha)),
                    "ap_raw": float(average_precision_score(noisy, -raw)),
                    "ap_model": float(average_precision_score(noisy, -p_given)),
                    "alpha_clean": float(alpha[~noisy].mean()) * batch,
                    "alpha_noisy": float(alpha[noisy].mean()) * batch,
                    "alpha_positive": float(np.mean(alpha > 0)),
                    "seconds_per_call": float(np.median(seconds)),
                    "ce_step_seconds": float(np.median(ce_seconds)),
                }
            )
    return rows


def run(values: dict, checkpoints: tuple[int, ...], extra: int, log) -> dict:
    config = TrainConfig(**values)
    data = prepare_data(config)
    device = torch.device("cpu")
    train, meta, test = data.sets(device)
    noisy = data.given != data.clean
    more = extra_meta(config, extra) if extra else None
    sets = meta_sets(meta, more, data.num_classes, seed=config.seed + 7)
    meta_batches = tuple(sorted({*META_BATCHES[:1], config.batch_size, *META_BATCHES[2:]}))
    model = build_model(config, num_classes=data.num_classes, in_shape=data.example_shape, device=device)
    found: list[dict] = []
    holder: dict = {}

    def on_epoch(record: dict) -> None:
        if record["epoch"] not in checkpoints:
            return
        trainer = holder["trainer"]
        t0 = time.perf_counter()
        rows = score(trainer.model, trainer.optimizer, train, noisy, sets, meta_batches, config.batch_size, seed=1000)
        found.append(
            {
                "epoch": record["epoch"],
                "phase": record["phase"],
                "lr": record["lr"],
                "test_accuracy": evaluate(trainer.model, test)[0],
                "memorised": record.get("memorised"),
                "rows": rows,
                "seconds": time.perf_counter() - t0,
            }
        )
        log(
            f"epoch {record['epoch']} ({record['phase']}): "
            + "  ".join(
                f"M{r['meta_set']}/b{r['meta_batch']} AP α {r['ap_alpha']:.3f} raw {r['ap_raw']:.3f}" for r in rows
            )
        )

    trainer = trainer_for_config(
        config, model, num_examples=len(train), num_classes=data.num_classes, progress=False, callbacks=(on_epoch,)
    )
    holder["trainer"] = trainer
    t0 = time.perf_counter()
    trainer.fit(train, meta, epochs=config.epochs, test=test, clean_labels=data.clean)
    return {
        "config": config.to_dict(),
        "checkpoints": found,
        "meta_sets": sorted(sets),
        "meta_batches": list(meta_batches),
        "train_examples": len(train),
        "realised_noise_rate": data.realised_noise_rate,
        "history": trainer.history,
        "seconds": time.perf_counter() - t0,
    }


def write_md(path: Path, data: dict) -> None:
    env, res = data["environment"], data["result"]
    L = [
        "# Meta batch and meta set size: do the L2B weights find the mislabelled examples?",
        "",
        common.machine_line(env),
        f"Command: `{data['command']}`  ",
        f"Protocol: see the script's docstring; {res['train_examples']} noisy training examples, realised noise "
        f"{100 * res['realised_noise_rate']:.1f} % (= the AP of chance). Total {data['total_seconds']:.0f} s.",
        "",
        "AP by α / by the raw score / by the model's probability of the given label; mean α (scaled so "
        "uniform = 1) on clean / mislabelled examples; cost of one meta_weights call against a plain CE "
        "step on the same batch (thread CPU time, side by side).",
        "",
    ]
    header = [
        "meta set",
        "meta batch",
        "AP α",
        "AP raw",
        "AP model",
        "α clean / mislabelled",
        "α > 0",
        "cost × CE step",
    ]

    def row(r: dict) -> list:
        return [r["meta_set"], r["meta_batch"], *(f"{r[k]:.3f}" for k in ("ap_alpha", "ap_raw", "ap_model"))] + [
            f"{r['alpha_clean']:.2f} / {r['alpha_noisy']:.2f}",
            f"{100 * r['alpha_positive']:.0f} %",
            f"{r['seconds_per_call'] / r['ce_step_seconds']:.1f}",
        ]

    for ck in res["checkpoints"]:
        mem = "" if ck["memorised"] is None else f", memorised {100 * ck['memorised']:.0f} %"
        L += [
            f"## Epoch {ck['epoch']} ({ck['phase']}, lr {ck['lr']:.4f}, test {100 * ck['test_accuracy']:.1f} %{mem})",
            "",
            *common.table(header, map(row, ck["rows"])),
            "",
        ]
    common.write_lines(path, L)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=("cifar10", "fashion-mnist"), default="cifar10")
    p.add_argument("--data-root", default=None, help="CIFAR-10: the folder holding cifar-10-batches-py")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quick", action="store_true", help="smoke test: digits, 4 epochs, no extra meta images")
    p.add_argument(
        "--out-prefix", default=None, help="default benchmarks/results/meta_batch_study (--quick: a tmp dir)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = "meta_batch_study" + ("" if args.protocol == "cifar10" else f"-{args.protocol}")
    prefix = common.out_prefix(args.out_prefix, name, args.quick)
    start, log = time.perf_counter(), common.elapsed_log()

    if args.quick:
        values, checkpoints, extra = QUICK, (1, 3), 0
    elif args.protocol == "fashion-mnist":
        values, checkpoints, extra = {**FASHION, "data_root": args.data_root}, FASHION_CHECKPOINTS, 1000
    else:
        values, checkpoints, extra = {**CIFAR, "data_root": args.data_root or "/tmp/cifar"}, CHECKPOINTS, 1000
    data = {
        "command": common.command(__file__, argv),
        "environment": common.environment(),
    }
    data["result"] = run(values, checkpoints, extra, log)
    data["total_seconds"] = time.perf_counter() - start
    common.write_json(prefix.with_suffix(".json"), data, indent=1)
    write_md(prefix.with_suffix(".md"), data)
    log(f"done in {data['total_seconds']:.0f}s: wrote {prefix}.json and {prefix}.md")


if __name__ == "__main__":
    main()
