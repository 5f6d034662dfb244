"""How close are the cheap meta-gradient engines (``head``, ``tail``) to the exact one?

    python benchmarks/studies/engine_fidelity.py --data-root-cifar10 /tmp/cifar   # the recorded run, 1 thread
    python benchmarks/studies/engine_fidelity.py --quick --out-prefix /tmp/ef     # smoke test: digits, seconds

(/tmp/cifar holds cifar-10-batches-py: ``python ../shared/data/cifar10/prepare.py /tmp/cifar``;
Fashion-MNIST is read from Debian's dataset-fashion-mnist package, ``apt-get install
dataset-fashion-mnist``. A data set whose files are missing is skipped and listed as such.)

The regime
----------
``head`` and ``tail`` hold most of the network fixed in the virtual step: they are exact for a
network trained only in its head / tail, and an approximation of the L2B weights otherwise. This
script measures how good an approximation, where L2B is used: noisy labels (40 % symmetric),
clean meta set, SGD with momentum and weight decay, the weights normalised as in training
(``org``). For each data set one short run goes through the library's one path (prepare_data,
build_model, trainer_for_config): CE warm-up, then L2B with the exact ``forward`` engine. At three
checkpoints (early: the end of the warm-up, when L2B takes over; middle; late: the second-to-last
epoch, since the cosine schedule's lr is 0 after the last one, which zeroes every score) the run's own
model and optimizer (current lr, momentum buffers) go to every engine, on the same fixed batches:
``--batches`` noisy batches of the run's batch size drawn from the training set (given labels;
the truth is known), each with its own meta batch from the clean meta set. Nothing is trained by
the measurement (meta_weights changes neither model nor optimizer).

What is reported, per data set, checkpoint and engine, against ``forward``
--------------------------------------------------------------------------
- ``spearman``: rank correlation of the raw scores with the exact ones over all 2B entries of a
  batch (observed- and pseudo-label rows, normalised jointly in training), mean over the batches;
  ``spearman_obs``: the observed-label row only.
- ``jaccard``: |A ∩ E| / |A ∪ E| of the examples with alpha > 0 under the engine (A) and the exact
  engine (E), mean over the batches (1 when both are empty).
- ``ap_alpha`` / ``ap_raw``: average precision of finding the mislabelled examples by low alpha /
  low observed-label raw score, over all evaluated examples pooled; for every engine, the exact
  one included (``chance`` = their noise rate).
``reverse`` (the published double backward) is listed as a check of the measurement: it is exact,
so its agreement with ``forward`` must be 1.

Writes <out-prefix>.json (every number, per batch too, command, machine, torch version) and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score

from l2b import TrainConfig, meta_weights
from l2b.meta import model_blocks
from l2b.training import build_model, evaluate, prepare_data, trainer_for_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common  # noqa: E402

EXACT = "forward"
TAIL_KS = (2, 3, 5, 9)  # those below the model's block count are measured (k = all is `forward`)

# name -> (config, checkpoint epochs): the accuracy grids' protocols (benchmarks/grids/digits.yaml,
# fashion-mnist.yaml, cifar10-fast.yaml) at 40 % symmetric noise; the whole script runs in under
# 15 minutes on one thread of this CPU. The late checkpoint is the second-to-last epoch: the cosine
# schedule ends at lr 0, where every raw score is 0 (they scale with the lr) and no weight is set.
SETS: dict[str, tuple[dict, tuple[int, int, int]]] = {
    "digits": (
        dict(data="digits", model="mlp", hidden=(256,), epochs=40, warmup_epochs=5, batch_size=64, num_meta=100),
        (5, 20, 39),
    ),
    "fashion-mnist": (
        dict(
            data="fashion-mnist", model="mlp", hidden=(256,), epochs=20, warmup_epochs=2, batch_size=128, num_meta=1000
        ),
        (2, 10, 19),
    ),
    "cifar10": (
        dict(
            data="cifar10",
            train_subset=10000,
            model="fast_cnn",
            width=16,
            augment=True,
            epochs=12,
            warmup_epochs=2,
            batch_size=128,
            num_meta=1000,
        ),
        (2, 7, 11),
    ),
}
COMMON = dict(noise="symmetric", noise_rate=0.4, meta_batch_size=100, lr=0.1, device="cpu", seed=0)


def engines_for(model: torch.nn.Module, reverse: bool) -> dict[str, dict]:
    """Engine label -> meta_weights keywords: the exact reference, head, tails shorter than the model."""
    blocks = sum(1 for _, b in model_blocks(model) if any(p.requires_grad for p in b.parameters()))
    out = {EXACT: dict(engine=EXACT)}
    if reverse:
        out["reverse"] = dict(engine="reverse")
    out["head"] = dict(engine="head")
    out.update({f"tail-{k}": dict(engine="tail", tail_modules=k) for k in TAIL_KS if k < blocks})
    return out


def eval_batches(train, meta, noisy: np.ndarray, batch: int, meta_batch: int, n: int, seed: int):
    """`n` fixed (inputs, given labels, noisy mask, meta inputs, meta labels) batches."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        idx = torch.randperm(len(train), generator=g)[:batch]
        midx = torch.randperm(len(meta), generator=g)[:meta_batch]
        out.append((train.inputs[idx], train.labels[idx], noisy[idx.numpy()], meta.inputs[midx], meta.labels[midx]))
    return out


def measure(model, optimizer, batches, engines: dict[str, dict]) -> dict:
    """Every engine's weights on every batch, and their agreement with the exact engine."""
    per_engine: dict[str, dict[str, list]] = {
        e: {"spearman": [], "spearman_obs": [], "jaccard": [], "alpha": [], "raw": [], "seconds": []} for e in engines
    }
    noisy = []
    for x, y, mask, mx, my in batches:
        noisy.append(mask)
        results = {}
        for name, kw in engines.items():
            t0 = time.perf_counter()
            results[name] = meta_weights(model, x, y, mx, my, optimizer, method="l2b", **kw)
            per_engine[name]["seconds"].append(time.perf_counter() - t0)
        ref = results[EXACT]
        ref_pos = ref.alpha > 0
        for name, mw in results.items():
            d = per_engine[name]
            d["spearman"].append(float(spearmanr(mw.raw.flatten().numpy(), ref.raw.flatten().numpy())[0]))
            d["spearman_obs"].append(float(spearmanr(mw.raw[0].numpy(), ref.raw[0].numpy())[0]))
            pos = mw.alpha > 0
            union = int((pos | ref_pos).sum())
            d["jaccard"].append(1.0 if union == 0 else int((pos & ref_pos).sum()) / union)
            d["alpha"].append(mw.alpha.numpy())
            d["raw"].append(mw.raw[0].numpy())
    noisy_all = np.concatenate(noisy)
    out = {"noise_rate": float(noisy_all.mean()), "examples": int(noisy_all.size), "engines": {}}
    for name, d in per_engine.items():
        alpha, raw = np.concatenate(d["alpha"]), np.concatenate(d["raw"])
        out["engines"][name] = {
            "spearman": float(np.nanmean(d["spearman"])),
            "spearman_obs": float(np.nanmean(d["spearman_obs"])),
            "jaccard": float(np.mean(d["jaccard"])),
            "ap_alpha": float(average_precision_score(noisy_all, -alpha)),
            "ap_raw": float(average_precision_score(noisy_all, -raw)),
            "alpha_positive": float(np.mean(alpha > 0)),
            "per_batch": {k: d[k] for k in ("spearman", "spearman_obs", "jaccard")},
            "seconds_per_batch": float(np.median(d["seconds"])),
        }
    return out


def run_set(name: str, values: dict, checkpoints: tuple[int, ...], args, log) -> dict:
    config = TrainConfig(**{**COMMON, **values, "meta_batch_size": args.meta_batch or COMMON["meta_batch_size"]})
    data = prepare_data(config)
    device = torch.device("cpu")
    train, meta, test = data.sets(device)
    noisy = data.given != data.clean
    model = build_model(config, num_classes=data.num_classes, in_shape=data.example_shape, device=device)
    engines = engines_for(model, args.reverse)
    batches = eval_batches(
        train, meta, noisy, config.batch_size, config.meta_batch_size, args.batches, seed=1000 + config.seed
    )
    found: dict[int, dict] = {}
    holder: dict = {}

    def on_epoch(record: dict) -> None:
        epoch = record["epoch"]
        if epoch not in checkpoints:
            return
        trainer = holder["trainer"]
        t0 = time.perf_counter()
        res = measure(trainer.model, trainer.optimizer, batches, engines)
        res.update(
            epoch=epoch,
            phase=record["phase"],
            lr=record["lr"],
            test_accuracy=evaluate(trainer.model, test)[0],
            seconds=time.perf_counter() - t0,
        )
        found[epoch] = res
        log(
            f"  {name} epoch {epoch} ({record['phase']}, test {res['test_accuracy']:.3f}): "
            + "  ".join(
                f"{e} ρ={m['spearman']:.3f} J={m['jaccard']:.2f} AP={m['ap_alpha']:.2f}"
                for e, m in res["engines"].items()
            )
        )

    trainer = trainer_for_config(
        config, model, num_examples=len(train), num_classes=data.num_classes, progress=False, callbacks=(on_epoch,)
    )
    holder["trainer"] = trainer
    t0 = time.perf_counter()
    trainer.fit(train, meta, epochs=config.epochs)
    return {
        "config": config.to_dict(),
        "checkpoints": [found[e] for e in checkpoints if e in found],
        "train_examples": len(train),
        "meta_examples": len(meta),
        "realised_noise_rate": data.realised_noise_rate,
        "seconds": time.perf_counter() - t0,
    }


def write_md(path: Path, data: dict) -> None:
    env = data["environment"]
    L = [
        "# Fidelity of the cheap meta-gradient engines against the exact one",
        "",
        common.machine_line(env),
        f"Command: `{data['command']}`  ",
        f"Total {data.get('total_seconds', float('nan')):.0f} s.",
        "",
        "Per data set, one short run (CE warm-up, then L2B with the exact `forward` engine; 40 % symmetric "
        "noise, SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine). At each checkpoint every engine "
        f"computes the L2B weights (`org`) from the run's own model and optimizer on the same "
        f"{data['args']['batches']} fixed batches. ρ: Spearman correlation of the raw scores with "
        "`forward`'s (all 2B entries; in parentheses the observed-label row only), mean over the batches. "
        "J: Jaccard agreement of the α > 0 sets with `forward`'s. AP α / AP raw: average precision of "
        "ranking the mislabelled examples first by low α / low observed-label raw score (chance: the noise "
        "rate). α > 0: share of examples with a positive weight on their given label. `reverse` is exact "
        "(a check: ρ = J = 1). tail-k: the last k blocks with parameters (`head` is tail-1).",
        "",
    ]
    if data.get("skipped"):
        L += [f"Skipped: {s}  " for s in data["skipped"]] + [""]
    for name, res in data["sets"].items():
        c = res["config"]
        L += [
            f"## {name}: {c['model']}"
            + (f" (width {c['width']})" if c.get("width") else "")
            + f", {res['train_examples']} noisy training / {res['meta_examples']} meta examples, "
            f"batch {c['batch_size']}, meta batch {c['meta_batch_size']}, {c['epochs']} epochs "
            f"({c['warmup_epochs']} warm-up)",
            "",
        ]
        rows = []
        for ck in res["checkpoints"]:
            where = f"{ck['epoch']} ({ck['phase']}, {ck['test_accuracy']:.3f})"
            for i, (e, m) in enumerate(ck["engines"].items()):
                rows.append(
                    [where if i == 0 else "", e, f"{m['spearman']:.3f} ({m['spearman_obs']:.3f})"]
                    + [f"{m[k]:.3f}" for k in ("jaccard", "ap_alpha", "ap_raw")]
                    + [f"{m['alpha_positive']:.2f}", f"{ck['noise_rate']:.2f}"]
                )
        header = ["epoch (phase, test acc.)", "engine", "ρ (obs. row)", "J α>0", "AP α", "AP raw", "α > 0", "chance"]
        L += [*common.table(header, rows), ""]
    common.write_lines(path, L)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", choices=list(SETS), default=None, help="data sets (default: all)")
    p.add_argument("--data-root-cifar10", default="/tmp/cifar", help="folder holding cifar-10-batches-py")
    p.add_argument("--batches", type=int, default=16, help="evaluation batches per checkpoint (default 16)")
    p.add_argument("--meta-batch", type=int, default=None, help="meta batch size (default 100)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-reverse", dest="reverse", action="store_false", help="skip the reverse-engine check")
    p.add_argument("--quick", action="store_true", help="smoke test: digits, 4 epochs, 2 batches")
    p.add_argument(
        "--out-prefix",
        default=None,
        help="output path without extension (default benchmarks/results/engine_fidelity; "
        "with --quick a temporary folder, so the recorded results stay as they are)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    prefix = common.out_prefix(args.out_prefix, "engine_fidelity", args.quick)
    sets = {k: SETS[k] for k in (args.sets or (["digits"] if args.quick else list(SETS)))}
    if args.quick:
        args.batches = min(args.batches, 2)
        sets = {k: ({**v, "epochs": 4, "warmup_epochs": 1}, (1, 2, 3)) for k, (v, _) in sets.items()}
    data = {
        "command": common.command(__file__, argv),
        "environment": common.environment(),
        "args": {"batches": args.batches, "threads": args.threads, "reverse": args.reverse, "tail_ks": TAIL_KS},
        "sets": {},
        "skipped": [],
    }
    start, log = time.perf_counter(), common.elapsed_log()
    for name, (values, checkpoints) in sets.items():
        if values["data"] == "cifar10":
            values = {**values, "data_root": args.data_root_cifar10}
        log(f"{name}: training, checkpoints at epochs {checkpoints}")
        try:
            data["sets"][name] = run_set(name, values, checkpoints, args, log)
        except FileNotFoundError as err:  # missing data files: say so, go on with the others
            data["skipped"].append(f"{name}: {err}")
            log(f"{name} skipped: {err}")
        data["total_seconds"] = time.perf_counter() - start
        common.write_json(prefix.with_suffix(".json"), data, indent=1)
        write_md(prefix.with_suffix(".md"), data)
    log(f"done in {data['total_seconds']:.0f}s: wrote {prefix}.json and {prefix}.md")


if __name__ == "__main__":
    main()
