"""Full CIFAR-10 on one GPU where CE memorises the noise: one command, under 10 minutes on one H100 / H200.

    python ../shared/data/cifar10/prepare.py /tmp/cifar         # once: the cifar-10-batches-py layout
    python benchmarks/gpu_cifar10.py --data-root /tmp/cifar      # the whole check

It runs from the repository root (the grid's CIFAR-10N file is ``../shared/data/cifar-n/``) with l2b
installed or ``PYTHONPATH=src``. Two phases:

1. **Speed settings, checked on the GPU.** From one trained-for-a-few-steps state of the grid's
   network (fast_cnn width 80, batch = meta batch = 512), one L2B step in each of float32, float32
   again (the GPU's own run-to-run spread: cuDNN may pick non-deterministic kernels), bf16 autocast
   (``precision: bf16``), channels_last and both. A setting is *exact* when its weights (alpha,
   beta) match float32's to the float32 tolerance of the tests (rtol 1e-6, atol 1e-9) or lie
   within float32's own run-to-run spread. Then the step time of CE and L2B in each setting.
   Phase 2 uses the fastest exact setting.
2. **The grid** ``benchmarks/grids/cifar10-gpu.yaml``: 49,000 noisy / 1,000 clean meta images,
   ce, l2rw and l2b at symmetric 40 % and 80 % and CIFAR-10N ``worse_label``, 2 seeds, run by
   ``benchmarks/accuracy.py --device cuda`` with ``--workers`` runs sharing the GPU. Its epochs
   are lowered, if needed, so that the runs fit ``--budget-s`` by the step times of phase 1; the
   rows, and the regime columns of the table (does CE memorise?), say what ran.

``--grid benchmarks/grids/cifar10-gpu-frontier.yaml`` runs L2B's cost levers (meta batch 32, tail 2 / 3,
every 2nd / 4th step, head) instead, in the same way (``gpu_cifar10-cifar10-gpu-frontier.{json,md}``).

Writes ``gpu_cifar10.json`` / ``.md`` (device, torch, fidelity, step times, what was chosen,
predicted and measured wall time) and the grid's ``accuracy-cifar10-gpu.{jsonl,md,png}`` into
``--results`` (default ``benchmarks/results``). ``--tiny`` checks the script on a CPU at a tiny size
(500 images, 2 epochs, width 8, seed 0) into a temporary folder unless ``--results`` is given.
"""

from __future__ import annotations

import argparse
import copy
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import torch
import torch.nn.functional as F
import yaml

from l2b.methods import Batch, StepContext, create_method
from l2b.models import create_model
from l2b.training import Optimization

HERE = Path(__file__).resolve().parent
GRID = HERE / "grids" / "cifar10-gpu.yaml"
TOL = dict(rtol=1e-6, atol=1e-9)  # the float32 tolerance of the engine and data-parallel tests
SETTINGS = {  # name -> (bf16 autocast, channels_last)
    "fp32": (False, False),
    "fp32 again": (False, False),
    "bf16": (True, False),
    "channels_last": (False, True),
    "bf16 + channels_last": (True, True),
}
TINY = {  # --tiny: the CPU check of the script's mechanics
    "train_subset": 600,
    "num_meta": 100,
    "epochs": 2,
    "warmup_epochs": 1,
    "width": 8,
    "batch_size": 64,
    "meta_batch_size": 64,
    "test_every": 1,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _deviation(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the weights' relative deviation."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def speed_settings(device: torch.device, base_config: dict, reps: int) -> dict:
    """Phase 1: the weights of one L2B step and the step times of CE and L2B in every setting,
    for the network, batch sizes and SGD settings of the grid's `base_config`.

    Inputs are seeded Gaussian images (B, 3, 32, 32) with random labels over 10 classes: the
    weights' exactness and the step time do not depend on the pixels.
    """
    width, batch, meta_batch = base_config["width"], base_config["batch_size"], base_config["meta_batch_size"]
    optim = Optimization(**{k: v for k, v in base_config.items() if k in Optimization.field_names()})

    def sgd(params):
        return torch.optim.SGD(
            params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay, nesterov=optim.nesterov
        )

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (batch,), generator=g).to(device)
    mx = torch.randn(meta_batch, 3, 32, 32, generator=g).to(device)
    my = torch.randint(0, 10, (meta_batch,), generator=g).to(device)
    torch.manual_seed(0)
    base = create_model("fast_cnn", num_classes=10, in_shape=(3, 32, 32), width=width).to(device)
    opt = sgd(base.parameters())
    for _ in range(5):  # away from the initialisation, with momentum buffers
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(base(x), y).backward()
        opt.step()

    def copy_of(channels_last: bool):
        model = copy.deepcopy(base)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        o = sgd(model.parameters())
        o.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict shares the momentum buffers
        return model, o

    weights, times = {}, {}
    for name, (bf16, last) in SETTINGS.items():
        model, o = copy_of(last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = create_method("l2b").step(
                model, o, Batch(x, y, meta_inputs=mx, meta_labels=my), StepContext(num_classes=10)
            )
        weights[name] = (out.alpha, out.beta)
        if name == "fp32 again":
            continue
        for method in ("ce", "l2b"):
            model, o = copy_of(last)
            step = create_method(method)
            for i in range(reps + 2):  # two warm-up steps (cuDNN's algorithm choice, allocator)
                if i == 2:
                    _sync(device)
                    t0 = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    step.step(model, o, Batch(x, y, meta_inputs=mx, meta_labels=my), StepContext(num_classes=10))
            _sync(device)
            times[(name, method)] = (time.perf_counter() - t0) / reps

    ref_a, ref_b = weights["fp32"]
    spread = max(_deviation(*pair) for pair in zip(weights["fp32 again"], weights["fp32"]))
    fidelity = {}
    for name, (a, b) in weights.items():
        dev = max(_deviation(a, ref_a), _deviation(b, ref_b))
        try:
            torch.testing.assert_close(a, ref_a, **TOL)
            torch.testing.assert_close(b, ref_b, **TOL)
            within_tol = True
        except AssertionError:
            within_tol = False
        fidelity[name] = {"deviation": dev, "within_tolerance": within_tol, "exact": within_tol or dev <= spread}
    return {"fidelity": fidelity, "fp32_spread": spread, "times": times}


def choose(phase1: dict) -> str:
    """The fastest setting (L2B step time) among the exact ones; fp32 unless another is 5 % faster."""
    times = phase1["times"]
    exact = [n for n in SETTINGS if n != "fp32 again" and phase1["fidelity"][n]["exact"]]
    best = min(exact, key=lambda n: times[(n, "l2b")])
    return best if times[(best, "l2b")] < 0.95 * times[("fp32", "l2b")] else "fp32"


def fit_epochs(grid: dict, phase1: dict, chosen: str, budget_s: float, workers: int) -> tuple[int, float]:
    """The grid's epochs, lowered (to 10 at the least) so that its runs fit `budget_s` by phase 1's
    step times; returns (epochs, predicted wall seconds).

    Per run: its training steps, a meta-set pass every epoch and a 10,000-image test pass every
    ``test_every`` epochs (a forward costs about a third of a CE step). The serial GPU time is
    divided by an assumed 1.5x from `workers` concurrent runs overlapping on a GPU that one small
    network does not fill (a guess; the measured wall time is recorded beside it), plus 20 s of
    data loading per round of workers.
    """
    base = grid["base"]
    n_train = (base.get("train_subset") or 50_000) - base["num_meta"]
    batch = base["batch_size"]
    steps, meta_steps, test_steps = (math.ceil(n / batch) for n in (n_train, base["num_meta"], 10_000))
    t_ce = phase1["times"][(chosen, "ce")]
    runs = [m for m in grid["methods"] for _ in range(len(grid["settings"]) * len(grid["seeds"]))]
    overlap = 1.5 if workers > 1 else 1.0
    rounds = math.ceil(len(runs) / workers)

    def wall(epochs: int) -> float:
        evals = math.ceil(epochs / base["test_every"]) + 1
        per_run = [
            epochs * (steps * phase1["times"][(chosen, "ce" if m == "ce" else "l2b")] + meta_steps * t_ce / 3)
            + evals * test_steps * t_ce / 3
            for m in runs
        ]
        return sum(per_run) / overlap + 20 * rounds

    epochs = int(base["epochs"])
    while epochs > 10 and wall(epochs) > budget_s:
        epochs -= 2
    return epochs, wall(epochs)


def render(result: dict) -> list[str]:
    f, t = result["fidelity"], result["step_seconds"]

    def ms(name: str) -> list[str]:  # CE and L2B step times, and L2B's against CE's in float32
        if name not in t:
            return ["", "", ""]
        return [f"{1e3 * t[name]['ce']:.1f}", f"{1e3 * t[name]['l2b']:.1f}", f"{t[name]['l2b'] / t['fp32']['ce']:.2f}"]

    lines = [
        "# Full CIFAR-10 on one GPU: speed settings and the memorisation-regime grid",
        "",
        f"Command: `{result['command']}`  ",
        common.machine_line(result["environment"]),
        "",
        "## Phase 1: are the weights exact, and what does each setting cost?",
        "",
        f"One L2B step from the same state (fast_cnn width {result['width']}, batch {result['batch']}, meta "
        f"batch {result['meta_batch']}); deviation = max |Δweight| / max |weight| against float32. Exact: "
        f"within the tests' float32 tolerance (rtol 1e-6, atol 1e-9) or within float32's own run-to-run "
        f"spread ({result['fp32_spread']:.2e}). Step times: mean of {result['reps']} steps after 2 warm-ups.",
        "",
        *common.table(
            ["setting", "weight deviation", "exact", "CE step ms", "L2B step ms", "L2B / CE (fp32)"],
            ([n, f"{f[n]['deviation']:.2e}", "yes" if f[n]["exact"] else "no", *ms(n)] for n in SETTINGS),
        ),
        "",
        f"Chosen for phase 2: **{result['chosen']}** (`{' '.join(result['sets']) or 'no --set'}`).",
        "",
        "## Phase 2: the grid",
        "",
        f"Epochs: {result['epochs']} (the grid file asks for {result['grid_epochs']}; budget "
        f"{result['budget_s']:.0f} s, predicted {result['predicted_s']:.0f} s, measured "
        f"{result['grid_seconds']:.0f} s with {result['workers']} workers). Table: "
        f"[accuracy-{result['grid_name']}.md](accuracy-{result['grid_name']}.md).",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="folder holding cifar-10-batches-py")
    p.add_argument("--results", type=Path, default=None, help="default: benchmarks/results (--tiny: a temp folder)")
    p.add_argument("--device", default=None, help="default: cuda (--tiny: cpu)")
    p.add_argument("--workers", type=int, default=6, help="grid runs sharing the device")
    p.add_argument("--budget-s", type=float, default=420.0, help="the grid's predicted wall time at most")
    p.add_argument("--reps", type=int, default=20, help="timed steps per setting and method")
    p.add_argument("--tiny", action="store_true", help="CPU check of the script at a tiny size")
    p.add_argument(
        "--grid",
        type=Path,
        default=GRID,
        help="the grid of phase 2 (default cifar10-gpu.yaml; grids/cifar10-gpu-frontier.yaml: L2B's cost levers)",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --tiny for the CPU check")
    env = common.environment(device)
    results = args.results or (Path(tempfile.mkdtemp(prefix="gpu_cifar10-")) if args.tiny else common.RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    grid = yaml.safe_load(args.grid.read_text())
    grid_epochs = grid["base"]["epochs"]
    if args.tiny:
        grid["base"].update(TINY)
    base = grid["base"]

    print(f"phase 1: speed settings on {device}", flush=True)
    reps = 2 if args.tiny else args.reps
    phase1 = speed_settings(device, base, reps)
    chosen = choose(phase1)
    bf16, last = SETTINGS[chosen]
    sets = [f"precision={'bf16' if bf16 else 'fp32'}", f"channels_last={'true' if last else 'false'}"]
    epochs, predicted = fit_epochs(grid, phase1, chosen, args.budget_s, args.workers)
    if args.tiny:
        sets += [f"{k}={v}" for k, v in TINY.items() if k != "epochs"]
    sets += [f"data_root={args.data_root}", f"epochs={epochs}"]
    for name, fid in phase1["fidelity"].items():
        print(f"  {name:>22}: weight deviation {fid['deviation']:.2e}, exact {fid['exact']}", flush=True)
    print(f"  chosen: {chosen}; grid epochs {epochs} (predicted {predicted:.0f} s)", flush=True)

    print("phase 2: the grid", flush=True)
    cmd = [
        sys.executable,
        str(HERE / "accuracy.py"),
        str(args.grid),
        "--device",
        str(device),
        "--results",
        str(results),
    ]
    cmd += ["--workers", str(args.workers)] + [a for s in sets for a in ("--set", s)]
    if args.tiny:
        cmd += ["--only", "seed=0"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    grid_seconds = time.perf_counter() - t0

    result = {
        "command": common.command(__file__, argv),
        "environment": env,
        "width": base["width"],
        "batch": base["batch_size"],
        "meta_batch": base["meta_batch_size"],
        "reps": reps,
        "fidelity": phase1["fidelity"],
        "fp32_spread": phase1["fp32_spread"],
        "step_seconds": {n: {m: phase1["times"][(n, m)] for m in ("ce", "l2b")} for n in SETTINGS if n != "fp32 again"},
        "chosen": chosen,
        "sets": [s for s in sets if not s.startswith("data_root=")],
        "grid_name": grid["name"],
        "grid_epochs": grid_epochs,
        "epochs": epochs,
        "budget_s": args.budget_s,
        "predicted_s": predicted,
        "grid_seconds": grid_seconds,
        "workers": args.workers,
        "total_seconds": time.perf_counter() - started,
    }
    stem = "gpu_cifar10" if args.grid == GRID else f"gpu_cifar10-{grid['name']}"
    common.write_json(results / f"{stem}.json", result)
    common.write_lines(results / f"{stem}.md", render(result))
    print("\n".join(render(result)))
    table = results / f"accuracy-{grid['name']}.md"
    print(f"wrote {results / (stem + '.md')} and {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
