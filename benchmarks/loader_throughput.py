"""Throughput of the on-disk image pipeline and of batched augmentation.

    python benchmarks/loader_throughput.py                       # the recorded run
    python benchmarks/loader_throughput.py --images 64 --quick   # smoke test, seconds

What is measured
----------------
1. FileListDataset + make_loader on a folder of --images generated 256x256 JPEGs (smooth random
   colour fields plus noise, quality 90, written to a temporary folder, so they sit in the page
   cache: this is decoding and transform cost, not disk speed). For each --workers count and each
   pipeline -- train (random_resized_crop(224), horizontal flip, to tensor, normalise) and eval
   (resize(256), center_crop(224), to tensor, normalise) -- one untimed epoch (which also starts the
   persistent workers), then --epochs timed epochs: images per second = images / seconds.
2. augment_batch (random crop, padding 4, and flip) on CIFAR-sized float32 batches (B, 3, 32, 32)
   for each --aug-batch B and each --threads count: median seconds per call over --reps calls, as
   images per second, next to one training step (forward, backward, SGD) of small_cnn and
   preact_resnet18 on the same batch with the same thread count.

Writes --out (Markdown: the command, the machine, the tables).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch


def make_jpegs(folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def loader_rate(paths, transform, *, workers: int, batch_size: int, epochs: int) -> float:
    from l2b.data import FileListDataset, make_loader

    ds = FileListDataset(paths, np.zeros(len(paths), dtype=np.int64), transform=transform, num_classes=1)
    loader = make_loader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, seed=0)
    for _ in loader:  # warm-up epoch: starts the workers
        pass
    start = time.perf_counter()
    seen = 0
    for _ in range(epochs):
        for x, _ in loader:
            seen += len(x)
    return seen / (time.perf_counter() - start)


def median_seconds(fn, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_step_seconds(name: str, batch: int, reps: int) -> float:
    from l2b.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_shape=(3, 32, 32))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return median_seconds(step, reps, warmup=1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--aug-batch", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--model-reps", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=["small_cnn", "preact_resnet18"])
    ap.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=None,
        help="torch thread counts for the augmentation part (default: torch's own)",
    )
    ap.add_argument("--quick", action="store_true", help="one epoch, few repetitions, small_cnn only")
    ap.add_argument("--out", default=str(common.RESULTS / "loader_throughput.md"))
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.reps, args.model_reps, args.models = 1, 3, 1, ["small_cnn"]

    from l2b.data import augment_batch
    from l2b.data import transforms as T

    lines = [
        "# Loader and augmentation throughput",
        "",
        f"Command: `{common.command(__file__, argv)}`",
        "",
        common.machine_line(common.environment()),
        "",
    ]

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = make_jpegs(Path(tmp), args.images, args.size)
        avg_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(f"wrote {len(paths)} JPEGs ({avg_kb:.0f} KiB each) in {time.perf_counter() - t0:.1f} s", flush=True)
        pipelines = {
            "train: random_resized_crop(224) + flip + to_tensor + normalize": T.train_transform(224),
            "eval: resize(256) + center_crop(224) + to_tensor + normalize": T.eval_transform(224),
        }
        lines += [
            f"## FileListDataset + make_loader ({len(paths)} generated {args.size}x{args.size} JPEGs, "
            f"{avg_kb:.0f} KiB each, batch {args.batch_size}, page-cached, {args.epochs} timed epoch(s) "
            "after one warm-up epoch)",
            "",
        ]
        rates = []
        for label, transform in pipelines.items():
            for w in args.workers:
                rate = loader_rate(paths, transform, workers=w, batch_size=args.batch_size, epochs=args.epochs)
                print(f"{label} workers={w}: {rate:.0f} images/s", flush=True)
                rates.append([label, w, f"{rate:.0f}"])
        lines += common.table(["pipeline", "workers", "images/s"], rates)

    lines += [
        "",
        f"## augment_batch on (B, 3, 32, 32) float32, CPU (median of {args.reps} calls), "
        f"against one training step on the same batch (median of {args.model_reps})",
        "",
    ]
    header = ["torch threads", "B", "augment ms/batch", "augment images/s"]
    header += [f"{m} step ms" for m in args.models] + [f"augment / {m} step" for m in args.models]
    rows = []
    default_threads = torch.get_num_threads()
    for threads in args.threads or [default_threads]:
        torch.set_num_threads(threads)
        for b in args.aug_batch:
            x = torch.randn(b, 3, 32, 32)
            gen = torch.Generator().manual_seed(0)
            aug = median_seconds(lambda: augment_batch(x, generator=gen), args.reps)
            steps = [model_step_seconds(m, b, args.model_reps) for m in args.models]
            print(
                f"threads={threads} augment B={b}: {aug * 1e3:.2f} ms ({b / aug:.0f} images/s); steps "
                + ", ".join(f"{m} {s * 1e3:.0f} ms" for m, s in zip(args.models, steps)),
                flush=True,
            )
            rows.append(
                [threads, b, f"{aug * 1e3:.2f}", f"{b / aug:.0f}"]
                + [f"{s * 1e3:.0f}" for s in steps]
                + [f"{100 * aug / s:.2g} %" for s in steps]
            )
    torch.set_num_threads(default_threads)
    out = Path(args.out)
    common.write_lines(out, lines + common.table(header, rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
