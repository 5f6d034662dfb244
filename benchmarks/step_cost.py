"""Cost of one training step of L2B / L2RW against plain cross-entropy: time and peak memory.

    python benchmarks/step_cost.py                          # the recorded run (CPU: ~1-2 h, see below)
    python benchmarks/step_cost.py --quick                  # smoke test: small_cnn, batch 16, seconds
    python benchmarks/step_cost.py --classes 100 --batch-sizes 128 \\
        --out-prefix 'benchmarks/results/step_cost-{device}-classes100'
    python benchmarks/step_cost.py --models unet:width=8,depth=3 --classes 2 --image-size 48 \\
        --batch-sizes 16 --extra-meta --out-prefix 'benchmarks/results/step_cost-{device}-unet'
    python benchmarks/step_cost.py --all-engines --batch-sizes 128 256 \\
        --extra-meta 128:32 256:32 256:128 --out-prefix 'benchmarks/results/step_cost-{device}-engines'

What is measured
----------------
For every model (small_cnn, preact_resnet18; input 3x32x32; --models takes NAME:WIDTH or
NAME:KEY=N,KEY=N for a model's options), number of classes and batch size B
(meta batch M = B, plus the extra (B, M) pairs of --extra-meta, by default 128:32), one optimizer
step (torch.optim.SGD, lr 0.1, momentum 0.9, weight decay 5e-4) of each variant on random data
with a fixed seed (a segmentation model, one whose logits are per pixel (B, K, H, W), gets masks
(B, H, W) as labels, and its weights are per pixel and per target):

    ce             plain cross-entropy (the baseline of every ratio)
    l2rw-reverse   L2RW, published double-backward meta-gradient
    l2b-reverse    L2B,  published double-backward meta-gradient
    l2rw-fused     L2RW, forward-mode engine whose dual forward is also the real step's forward
    l2b-forward    L2B,  forward-mode engine plus a separate real forward (the library default)
    l2b-fused      L2B,  fused forward-mode engine (faster on paper, about 3x the memory)

and, when asked for (--variants, or --all-engines: ce and every l2b engine), the cheap engines
that take the meta-gradient over part of the network only:

    l2b-head       L2B,  final linear layer only, in closed form; features from the real forward
    l2b-tail<k>    L2B,  exact forward mode over the last k blocks (k = 2, 3, 4), fused with the real
                   forward (small_cnn: tail3 = last conv, BN, linear; preact_resnet18: tail3 = last
                   residual block, final BN, fc; tail4 = the whole last stage, final BN, fc)

Seconds per step: every variant gets its own model and optimizer (same initial weights), runs the
warm-up steps, then each of the --reps repetitions runs every variant once, in an order rotated
by one from repetition to repetition, so that load from other processes falls on all variants
alike.  Reported: median, min and interquartile range (q75 - q25) per variant, the ratio of each
median to ce's median and the ratio l2b-reverse / l2b-fused.  One more entry of the rotation runs
the l2b-fused step by hand from the l2b.meta building blocks and times its four parts (meta
forward+backward = meta_tangents, dual forward, weights + weighted loss, real backward + optimizer
step); its total is reported next to l2b-fused's median as a check.

Peak memory: on CUDA, torch.cuda.max_memory_allocated() minus the memory allocated before one
step run after the timing (in process).  On CPU there is no allocator statistic: every variant
runs in a fresh subprocess (same torch thread count) that builds model, optimizer and data, runs
one step of the same variant on a throwaway model with a 2-image batch (so that the thread pool,
kernel libraries and forward-mode AD are initialised outside the measurement), resets
the peak resident size to the current one (Linux: /proc/self/clear_refs), reads ru_maxrss, runs
--memory-steps steps and reports how much the peak grew: the peak working memory of a step
(momentum buffers and gradients included), in MiB.  The peak is read as VmHWM from
/proc/self/status when the reset worked: ru_maxrss also keeps the high-water mark of threads
that have exited, which the reset does not lower (importing torch leaves one); elsewhere it is
the growth of ru_maxrss itself.

Writes <out-prefix>.json (every measurement, command line, environment), .csv (one row per
configuration and variant), .png (seconds per step and ratio to ce against batch size, one
column per model) and .md (tables).  <out-prefix> defaults to
benchmarks/results/step_cost-{device}, where {device} becomes "cpu" or "cuda-<gpu name>".
Results are saved after every configuration, so an interrupted run keeps what it measured;
--from-json re-draws the plot and the tables from a saved JSON without measuring again.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import common
import numpy as np
import torch
import torch.nn.functional as F

from l2b.meta import dual_forward, meta_tangents, scores_from_jvp, weights_from_scores
from l2b.meta.dual_rules import torch_rules
from l2b.methods import Batch, StepContext, create_method
from l2b.models import create_model

SEED = 0
OPTIM = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)

# name -> (method, its options).
VARIANTS: dict[str, tuple[str, dict]] = {
    "ce": ("ce", {}),
    "l2rw-reverse": ("l2rw", {"engine": "reverse"}),
    "l2b-reverse": ("l2b", {"engine": "reverse"}),
    "l2rw-fused": ("l2rw", {"engine": "fused"}),
    "l2b-forward": ("l2b", {"engine": "forward"}),
    "l2b-fused": ("l2b", {"engine": "fused"}),
    "l2b-head": ("l2b", {"engine": "head"}),
    **{f"l2b-tail{k}": ("l2b", {"engine": "tail", "tail_modules": k}) for k in (2, 3, 4)},
    # the exact engine on every k-th step, the steps between reusing remembered weights: one timed
    # call runs k consecutive steps (one of them with the meta-gradient), reported per step
    **{f"l2b-every{k}": ("l2b", {"meta_every": k}) for k in (2, 4)},
}
# The exact engines with torch's own forward-mode rules instead of l2b.meta.dual_rules (what they
# ran before those rules; l2b.meta.dual_rules.torch_rules), to measure what the rules save.
TORCH_RULES = "-torchrules"
VARIANTS.update({f"{v}{TORCH_RULES}": VARIANTS[v] for v in ("l2b-forward", "l2b-fused")})
# What runs without --variants (the recorded tables' set), and with --all-engines.
DEFAULT_VARIANTS = ("ce", "l2rw-reverse", "l2b-reverse", "l2rw-fused", "l2b-forward", "l2b-fused")
ENGINE_VARIANTS = ("ce", "l2b-reverse", "l2b-forward", "l2b-fused", "l2b-tail3", "l2b-head")
PARTS_KEY = "l2b-fused (by parts)"
PARTS = ("meta_fwd_bwd", "dual_forward", "weights", "real_bwd_step")
PART_LABELS = {
    "meta_fwd_bwd": "meta fwd+bwd (meta_tangents)",
    "dual_forward": "dual forward",
    "weights": "weights + weighted loss",
    "real_bwd_step": "real backward + optimizer step",
}
CL = "+cl"  # suffix of a channels-last variant (--channels-last both)
MEMORY_TAG = "MEMORY_PROBE_RESULT "


# --------------------------------------------------------------------------------------------
# set-up shared by the timing process and the memory probes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    model: str
    classes: int
    batch: int
    meta_batch: int
    image_size: int = 32

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def label(self) -> str:
        size = "" if self.image_size == 32 else f" {self.image_size}x{self.image_size}"
        return f"{self.model} K={self.classes} B={self.batch} M={self.meta_batch}{size}"


def make_data(cfg: Config, device: torch.device, channels_last: bool, masks: bool = False):
    """Random images (B, C, H, W) and labels: class indices (B,), or masks (B, H, W) when `masks`
    (a segmentation model), and the same for the meta batch."""
    g = torch.Generator().manual_seed(SEED)
    per_image = tuple(cfg.in_shape[1:]) if masks else ()
    x = torch.randn(cfg.batch, *cfg.in_shape, generator=g)
    y = torch.randint(0, cfg.classes, (cfg.batch, *per_image), generator=g)
    mx = torch.randn(cfg.meta_batch, *cfg.in_shape, generator=g)
    my = torch.randint(0, cfg.classes, (cfg.meta_batch, *per_image), generator=g)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return (x.to(device, memory_format=fmt), y.to(device), mx.to(device, memory_format=fmt), my.to(device))


def model_options(spec: str) -> tuple[str, dict[str, int]]:
    """ "fast_cnn:16" -> the model with that width; "unet:width=8,depth=3" -> those options."""
    name, _, rest = spec.partition(":")
    if not rest:
        return name, {}
    if rest.isdigit():
        return name, {"width": int(rest)}
    options = {}
    for item in rest.split(","):
        key, sep, val = item.partition("=")
        if not sep or not val.isdigit():
            raise SystemExit(f"--models: expected NAME, NAME:WIDTH or NAME:KEY=N,KEY=N, got {spec!r}")
        options[key] = int(val)
    return name, options


def is_segmentation(model: torch.nn.Module, cfg: Config) -> bool:
    """Whether the model maps images to logits per pixel (B, K, H, W): its labels are masks."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *cfg.in_shape, device=next(model.parameters()).device))
    model.train(was)
    return out.dim() == 4


def make_model(cfg: Config, device: torch.device, channels_last: bool):
    torch.manual_seed(SEED)  # every variant starts from the same weights
    name, options = model_options(cfg.model)
    model = create_model(name, num_classes=cfg.classes, in_shape=cfg.in_shape, **options).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    return model, torch.optim.SGD(model.parameters(), **OPTIM)


def split_variant(name: str) -> tuple[str, bool]:
    return (name[: -len(CL)], True) if name.endswith(CL) else (name, False)


def baseline(variant: str, measured) -> str:
    """The ce entry a variant is compared with: ce in the same memory format where measured."""
    ce = "ce" + (CL if split_variant(variant)[1] else "")
    return ce if ce in measured else "ce"


def syncer(device: torch.device):
    """Waits for the device's queued work (CUDA), so that a timer sees it; nothing on the CPU."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def make_runner(name: str, cfg: Config, device: torch.device):
    """A closure running one step of variant `name` on its own model; returns a dict of
    per-part seconds for the by-parts entry, else None."""
    base, cl = split_variant(name)
    model, opt = make_model(cfg, device, cl)
    x, y, mx, my = make_data(cfg, device, cl, masks=is_segmentation(model, cfg))
    if base == PARTS_KEY:
        return lambda: fused_by_parts(model, opt, x, y, mx, my, syncer(device))
    method_name, options = VARIANTS[base]
    method = create_method(method_name, **options)
    rules = torch_rules if base.endswith(TORCH_RULES) else contextlib.nullcontext
    steps = int(options.get("meta_every", 1))
    batch = Batch(x, y, index=torch.arange(len(y)), meta_inputs=mx, meta_labels=my)
    if steps > 1:  # the per-example memory over this batch's examples
        method.start_epoch(model, range(len(y)), epoch=0, device=device)

    def run():
        with rules():
            for _ in range(steps):
                method.step(model, opt, batch, StepContext(num_classes=cfg.classes, generator=torch.Generator()))
        return None

    run.steps = steps  # timings are divided by it: seconds per step
    return run


def fused_by_parts(model, opt, x, y, mx, my, sync) -> dict[str, float]:
    """The l2b-fused step written out with the l2b.meta building blocks, each part timed."""
    model.train()
    sync()
    t0 = time.perf_counter()
    tangents, meta_loss = meta_tangents(model, mx, my, opt)
    sync()
    t1 = time.perf_counter()
    logits, zdot = dual_forward(model, x, tangents, real_step=True)
    sync()
    t2 = time.perf_counter()
    raw, pseudo = scores_from_jvp(logits.detach(), zdot, y, rows=2)
    mw = weights_from_scores(raw, pseudo, logits, meta_loss, rows=2, normalize="org", temperature=1.0)
    loss = (mw.alpha * F.cross_entropy(logits, y, reduction="none")).sum() + (
        mw.beta * F.cross_entropy(logits, mw.pseudo_labels, reduction="none")
    ).sum()
    sync()
    t3 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    float(loss.detach())  # the library's step reads the loss too
    sync()
    t4 = time.perf_counter()
    return {"meta_fwd_bwd": t1 - t0, "dual_forward": t2 - t1, "weights": t3 - t2, "real_bwd_step": t4 - t3}


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------


def _maxrss_mib() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def memory_probe(args) -> None:
    """Hidden mode: one variant, fresh process, ru_maxrss growth over --memory-steps steps."""
    torch.set_num_threads(args.threads)
    model_name, classes, batch, meta_batch, variant = args._memory_probe
    cfg = Config(model_name, int(classes), int(batch), int(meta_batch), args.image_size)
    device = torch.device("cpu")
    step = make_runner(variant, cfg, device)
    # One step of the same variant on a throwaway model and a 2-image batch first: the thread
    # pool, kernel libraries and forward-mode AD formulas are initialised once per process, and
    # those one-off allocations should not be charged to the measured step.
    make_runner(variant, Config(cfg.model, cfg.classes, 2, 2, cfg.image_size), device)()
    gc.collect()
    # The high-water mark so far includes transient peaks of importing and building (possibly
    # above today's resident size); Linux resets it to the current resident size on request.
    maxrss_before_reset = _maxrss_mib()
    reset = common.reset_peak_rss()
    before, rss_before, hwm_before = _maxrss_mib(), common.proc_status_mib("VmRSS"), common.proc_status_mib("VmHWM")
    peaks, hwms, secs = [], [], []
    for _ in range(args.memory_steps):
        t0 = time.perf_counter()
        step()
        secs.append(time.perf_counter() - t0)
        peaks.append(_maxrss_mib())
        hwms.append(common.proc_status_mib("VmHWM"))
    out = {
        "variant": variant,
        "threads": torch.get_num_threads(),
        "peak_reset": reset,
        "maxrss_before_reset_mib": maxrss_before_reset,
        "maxrss_before_mib": before,
        "maxrss_after_each_step_mib": peaks,
        "maxrss_growth_mib": max(peaks) - before,
        "rss_before_mib": rss_before,
        "vmhwm_before_mib": hwm_before,
        "vmhwm_after_each_step_mib": hwms,
        "step_seconds": secs,
    }
    # ru_maxrss is the larger of the address space's high-water mark (VmHWM, which the reset
    # lowers) and that of threads that have exited (which it does not lower: torch's import
    # leaves such a mark). So when the reset worked, the step's peak is read from VmHWM.
    if reset and hwm_before is not None and None not in hwms:
        out["peak_growth_mib"], out["peak_source"] = max(hwms) - hwm_before, "VmHWM growth after peak reset"
    else:
        out["peak_growth_mib"], out["peak_source"] = out["maxrss_growth_mib"], "ru_maxrss growth"
    print(MEMORY_TAG + json.dumps(out), flush=True)


def probe_memory_cpu(cfg: Config, variant: str, threads: int, steps: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_memory-probe"]
    cmd += [cfg.model, str(cfg.classes), str(cfg.batch), str(cfg.meta_batch), variant]
    cmd += ["--threads", str(threads), "--image-size", str(cfg.image_size), "--memory-steps", str(steps)]
    env = dict(os.environ)
    src = str(common.REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in r.stdout.splitlines():
        if line.startswith(MEMORY_TAG):
            return json.loads(line[len(MEMORY_TAG) :])
    raise RuntimeError(f"memory probe failed for {cfg.label} {variant}:\n{r.stderr[-3000:]}")


def probe_memory_cuda(step, device) -> dict:
    torch.cuda.synchronize(device)
    gc.collect()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {
        "allocated_before_mib": base / 2**20,
        "max_allocated_mib": peak / 2**20,
        "peak_growth_mib": (peak - base) / 2**20,
    }


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


def summarize(xs: list[float]) -> dict:
    q25, q75 = np.percentile(xs, [25, 75])
    return {"median_s": statistics.median(xs), "min_s": min(xs), "iqr_s": float(q75 - q25), "n": len(xs)}


def timed(fn, sync) -> tuple[float, float, dict | None]:
    """Wall and process CPU seconds of one call of `fn` (the device's work included), and its result."""
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return time.perf_counter() - t0, time.process_time() - c0, out


def measure_config(
    cfg: Config,
    variants: list[str],
    device: torch.device,
    reps: int,
    warmup: int,
    memory: bool,
    memory_steps: int,
    threads: int,
    log,
) -> dict:
    sync = syncer(device)
    entries = variants + [PARTS_KEY]
    runners = {}
    warm: dict[str, list[float]] = {}
    for name in entries:
        runners[name] = make_runner(name, cfg, device)
        warm[name] = [timed(runners[name], sync)[0] / getattr(runners[name], "steps", 1) for _ in range(warmup)]
        log(f"  [{cfg.label}] warm-up {name:22s} " + " ".join(f"{s:.3f}s" for s in warm[name]))
    times: dict[str, list[float]] = {n: [] for n in entries}
    cpu: dict[str, list[float]] = {n: [] for n in entries}
    parts: dict[str, list[float]] = {p: [] for p in PARTS}
    orders = []
    for r in range(reps):
        order = entries[r % len(entries) :] + entries[: r % len(entries)]
        orders.append(order)
        for name in order:
            gc.collect()
            wall, cpu_s, out = timed(runners[name], sync)
            per_call = getattr(runners[name], "steps", 1)  # every-k variants: k steps per call
            times[name].append(wall / per_call)
            cpu[name].append(cpu_s / per_call)
            if out is not None:  # the by-parts entry
                for p in PARTS:
                    parts[p].append(out[p])
        log(f"  [{cfg.label}] rep {r + 1}/{reps}: " + "  ".join(f"{n} {times[n][-1]:.3f}" for n in variants))

    result = {
        "config": cfg.__dict__,
        "reps": reps,
        "warmup": warmup,
        "orders": orders,
        "warmup_seconds": warm,
        "seconds": times,
        "cpu_seconds": cpu,
        "variants": {},
    }
    for name in variants:
        s = summarize(times[name])
        ce = baseline(name, times)
        s["ratio_to_ce"] = s["median_s"] / statistics.median(times[ce])
        s["cpu_median_s"] = statistics.median(cpu[name])
        s["cpu_ratio_to_ce"] = s["cpu_median_s"] / statistics.median(cpu[ce])
        s["min_ratio_to_ce"] = s["min_s"] / min(times[ce])
        s["images_per_s"] = cfg.batch / s["median_s"]
        result["variants"][name] = s
    stats = result["variants"]
    for suffix in ("", CL):
        rev, fused = "l2b-reverse" + suffix, "l2b-fused" + suffix
        if rev in stats and fused in stats:
            result["l2b_reverse_over_fused" + suffix.replace("+", "_")] = (
                stats[rev]["median_s"] / stats[fused]["median_s"]
            )
    for name in variants:
        if name.endswith(CL) and name[: -len(CL)] in stats:
            stats[name]["channels_last_speedup"] = stats[name[: -len(CL)]]["median_s"] / stats[name]["median_s"]
    bd = {p: statistics.median(parts[p]) for p in PARTS}
    bd["sum_of_part_medians_s"] = sum(bd[p] for p in PARTS)
    bd["by_parts_step_median_s"] = statistics.median(times[PARTS_KEY])
    if "l2b-fused" in stats:
        bd["l2b_fused_step_median_s"] = stats["l2b-fused"]["median_s"]
    bd["seconds"] = parts
    result["fused_breakdown"] = bd
    log(
        f"  [{cfg.label}] fused breakdown: "
        + "  ".join(f"{p} {bd[p]:.3f}s" for p in PARTS)
        + f"  (sum {bd['sum_of_part_medians_s']:.3f}s)"
    )

    if memory and device.type == "cuda":
        for name in variants:
            stats[name]["memory"] = probe_memory_cuda(runners[name], device)
    del runners
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if memory and device.type == "cpu":
        for name in variants:
            stats[name]["memory"] = probe_memory_cpu(cfg, name, threads, memory_steps)
            log(f"  [{cfg.label}] memory  {name:22s} {stats[name]['memory']['peak_growth_mib']:.1f} MiB")
    if memory:
        for name in variants:
            m, ce_mib = stats[name]["memory"], stats[baseline(name, stats)]["memory"]["peak_growth_mib"]
            m["ratio_to_ce"] = m["peak_growth_mib"] / ce_mib if ce_mib > 0 else float("nan")
    for name in variants:
        s = stats[name]
        mem = f"  peak {s['memory']['peak_growth_mib']:8.1f} MiB (x{s['memory']['ratio_to_ce']:.2f})" if memory else ""
        log(
            f"  [{cfg.label}] {name:22s} median {s['median_s']:.4f}s  min {s['min_s']:.4f}s  "
            f"IQR {s['iqr_s']:.4f}s  x{s['ratio_to_ce']:.2f} ce (CPU time x{s['cpu_ratio_to_ce']:.2f}){mem}"
        )
    return result


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def device_kind(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return "cpu"


# The CSV's columns: the configuration, then each variant's statistics in these formats.
CSV_STATS = {
    "median_s": ".6f",
    "min_s": ".6f",
    "iqr_s": ".6f",
    "ratio_to_ce": ".4f",
    "min_ratio_to_ce": ".4f",
    "cpu_median_s": ".6f",
    "cpu_ratio_to_ce": ".4f",
    "images_per_s": ".2f",
}
CSV_FIELDS = ["device", "model", "classes", "batch", "meta_batch", "variant", "reps", "warmup", *CSV_STATS]
CSV_FIELDS += ["peak_mem_mib", "mem_ratio_to_ce", "channels_last_speedup", *(f"breakdown_{p}_s" for p in PARTS)]


def write_csv(path: Path, data: dict) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for res in data["results"]:
            c = res["config"]
            for name, s in res["variants"].items():
                row = {"device": data["device_kind"], **{k: c[k] for k in ("model", "classes", "batch", "meta_batch")}}
                row.update(variant=name, reps=res["reps"], warmup=res["warmup"])
                row.update({k: format(s[k], fmt) for k, fmt in CSV_STATS.items()})
                if "memory" in s:
                    row["peak_mem_mib"] = f"{s['memory']['peak_growth_mib']:.1f}"
                    row["mem_ratio_to_ce"] = f"{s['memory']['ratio_to_ce']:.4f}"
                if "channels_last_speedup" in s:
                    row["channels_last_speedup"] = f"{s['channels_last_speedup']:.4f}"
                if name == "l2b-fused":
                    row.update({f"breakdown_{p}_s": f"{res['fused_breakdown'][p]:.6f}" for p in PARTS})
                w.writerow(row)


def _groups(data: dict):
    """(model, classes) -> {(batch, meta): result} in measurement order."""
    out: dict[tuple[str, int], dict[tuple[int, int], dict]] = {}
    for res in data["results"]:
        c = res["config"]
        out.setdefault((c["model"], c["classes"]), {})[(c["batch"], c["meta_batch"])] = res
    return out


def _load_line(res_by: dict) -> str:
    loads = [(k, r.get("loadavg_after")) for k, r in res_by.items()]
    if not any(v for _, v in loads):
        return ""
    return (
        " Machine load (1-minute load average) when each configuration finished: "
        + ", ".join(f"B={b} M={m}: {v[0]:.1f}" for (b, m), v in loads if v)
        + "."
    )


def _shape(data: dict) -> str:
    return "x".join(map(str, data["args"]["in_shape"]))


def _fmt_s(s: float) -> str:
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def write_md(path: Path, data: dict) -> None:
    env = data["environment"]
    cuda = data["device"] == "cuda"
    L = [
        f"# Step cost of L2B / L2RW against cross-entropy ({data['device_kind']})",
        "",
        common.machine_line(env),
        *[f"Earlier command (its configurations are kept): `{r['command']}`  " for r in data.get("earlier_runs", [])],
        f"Command: `{data['command']}`  ",
        f"One SGD step (lr 0.1, momentum 0.9, weight decay 5e-4) on random {_shape(data)} images. "
        "Cells: median seconds "
        "per step over the repetitions, and in parentheses the ratio to ce's median in the same configuration "
        "(all variants interleaved in one process). B = batch, M = meta batch.",
        "",
    ]
    if data.get("notes"):
        L += [f"Note: {n}  " for n in data["notes"]] + [""]
    for (model, classes), res_by in _groups(data).items():
        keys = list(res_by)
        variants = list(next(iter(res_by.values()))["variants"])
        reps = sorted({r["reps"] for r in res_by.values()})
        warm = sorted({r["warmup"] for r in res_by.values()})

        def per_variant(cell, keys=keys) -> list[list[str]]:
            """A row per variant: `cell(its statistics)` in each configuration, "" where not measured."""
            rows = []
            for v in variants:
                found = [res_by[k]["variants"].get(v) for k in keys]
                rows.append([v, *("" if s is None else cell(s) for s in found)])
            return rows

        def head(keys=keys) -> list[str]:
            return ["variant", *(f"B={b} M={m}" for b, m in keys)]

        rows = per_variant(lambda s: f"{_fmt_s(s['median_s'])} (×{s['ratio_to_ce']:.2f})")
        rows.append(
            ["**l2b-reverse / l2b-fused**"]
            + [
                f"**{res_by[k]['l2b_reverse_over_fused']:.2f}**" if "l2b_reverse_over_fused" in res_by[k] else ""
                for k in keys
            ]
        )
        if cuda:
            rows.append(
                ["images/s of l2b-fused (ce)"]
                + [
                    f"{res_by[k]['variants']['l2b-fused']['images_per_s']:.0f} "
                    f"({res_by[k]['variants']['ce']['images_per_s']:.0f})"
                    if "l2b-fused" in res_by[k]["variants"]
                    else ""
                    for k in keys
                ]
            )
        L += [
            f"## {model}, {classes} classes",
            "",
            f"{'/'.join(map(str, reps))} timed repetitions after {'/'.join(map(str, warm))} "
            "warm-up step(s) per variant." + _load_line(res_by),
            "",
            *common.table(head(), rows),
            "",
            "Load-robust views of the same steps: fastest step in seconds (ratio of mins to ce's min), median "
            "process CPU time (user + system, all threads; ratio to ce's), interquartile range of the step time. "
            "Other processes stretch wall time; they stretch CPU time much less, except for threads spinning "
            "while they wait for each other.",
            "",
            *common.table(
                head(),
                per_variant(
                    lambda s: (
                        f"min {_fmt_s(s['min_s'])} (×{s['min_ratio_to_ce']:.2f}) · CPU {_fmt_s(s['cpu_median_s'])} "
                        f"(×{s['cpu_ratio_to_ce']:.2f}) · IQR {_fmt_s(s['iqr_s'])}"
                    )
                ),
            ),
        ]
        mem_keys = [k for k in keys if all("memory" in s for s in res_by[k]["variants"].values())]
        if mem_keys:
            steps = sorted({res_by[k].get("memory_steps") or data["args"]["memory_steps"] for k in mem_keys})
            what = (
                "peak of torch.cuda.max_memory_allocated over one step minus the memory allocated before it"
                if cuda
                else f"growth of the peak resident size over the first {'/'.join(map(str, steps))} step(s) in a "
                "fresh process, after one throw-away step on 2 images and a reset of the peak"
            )
            L += [
                "",
                f"Peak working memory of a step, MiB ({what}), and ratio to ce:",
                "",
                *common.table(
                    head(mem_keys),
                    per_variant(
                        lambda s: f"{s['memory']['peak_growth_mib']:.0f} (×{s['memory']['ratio_to_ce']:.2f})", mem_keys
                    ),
                ),
            ]
        breakdown = []
        for k in keys:
            bd = res_by[k]["fused_breakdown"]
            tot = bd["sum_of_part_medians_s"]
            breakdown.append(
                [f"{k[0]}, {k[1]}", *(f"{_fmt_s(bd[p])} ({bd[p] / tot:.0%})" for p in PARTS)]
                + [_fmt_s(tot), _fmt_s(bd["by_parts_step_median_s"])]
                + [_fmt_s(bd["l2b_fused_step_median_s"]) if "l2b_fused_step_median_s" in bd else ""]
            )
        L += [
            "",
            "l2b-fused written out by hand with the l2b.meta building blocks: median seconds of each part "
            "(share of their sum).",
            "",
            *common.table(
                ["B, M", *(PART_LABELS[p] for p in PARTS), "sum of parts", "by-parts step", "l2b-fused step"],
                breakdown,
            ),
            "",
        ]
    common.write_lines(path, L)


STYLE = {  # variant -> (colour, line style, marker)
    "ce": ("black", "-", "o"),
    "l2rw-reverse": ("tab:red", "--", "v"),
    "l2b-reverse": ("tab:red", "-", "v"),
    "l2b-forward": ("tab:orange", "-", "s"),
    "l2rw-fused": ("tab:blue", "--", "D"),
    "l2b-fused": ("tab:blue", "-", "D"),
    "l2b-head": ("tab:green", "-", "^"),
    "l2b-tail2": ("tab:olive", ":", "P"),
    "l2b-tail3": ("tab:olive", "-", "P"),
    "l2b-tail4": ("tab:olive", "--", "P"),
}


def write_png(path: Path, data: dict) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    groups = _groups(data)
    n = len(groups)
    size = (5.6 * n + 0.6, 8.2)
    with common.figure(
        path, dpi=120, nrows=2, ncols=n, figsize=size, squeeze=False, gridspec_kw={"height_ratios": [3, 2]}
    ) as (fig, axes):
        handles: dict[str, Line2D] = {}
        extra_meta = False
        for col, ((model, classes), res_by) in enumerate(groups.items()):
            ax, axr = axes[0, col], axes[1, col]
            main = sorted(k for k in res_by if k[0] == k[1])
            extra = [k for k in res_by if k[0] != k[1]]
            variants = list(next(iter(res_by.values()))["variants"])
            batches = [b for b, _ in main] or sorted({b for b, _ in extra})
            for v in variants:
                base, cl = split_variant(v)
                color, ls, mk = STYLE.get(base, ("tab:gray", "-", "x"))
                line = dict(color=color, ls=":" if cl else ls, marker=mk, ms=6, lw=1.8)
                hollow = dict(marker=mk, ms=7, mfc="white", mec=color, ls="none")
                xs = [b for b, _ in main]
                med = [res_by[k]["variants"][v]["median_s"] for k in main]
                lo = [res_by[k]["variants"][v]["median_s"] - np.percentile(res_by[k]["seconds"][v], 25) for k in main]
                hi = [np.percentile(res_by[k]["seconds"][v], 75) - res_by[k]["variants"][v]["median_s"] for k in main]
                if xs:
                    h = ax.errorbar(xs, med, yerr=[lo, hi], capsize=3, label=v, **line)
                    handles.setdefault(v, h.lines[0])
                    axr.plot(xs, [res_by[k]["variants"][v]["ratio_to_ce"] for k in main], **line)
                for k in extra:
                    extra_meta = True
                    s = res_by[k]["variants"][v]
                    ax.plot([k[0] * 1.07], [s["median_s"]], **hollow)
                    axr.plot([k[0] * 1.07], [s["ratio_to_ce"]], **hollow)
            for a in (ax, axr):
                a.set_xscale("log", base=2)
                a.xaxis.set_major_locator(FixedLocator(batches))
                a.xaxis.set_minor_locator(NullLocator())
                a.set_xticklabels([str(b) for b in batches])
                # Fixed limits: with one batch size, autoscaling would push the hollow (extra meta
                # batch) markers to the far edge, as if they belonged to another batch size.
                a.set_xlim(min(batches) / 1.45, max(batches) * 1.45)
                a.grid(True, which="both", alpha=0.3)
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{model}, {classes} classes", fontsize=12)
            ax.set_ylabel("seconds per step (median, bars: IQR)")
            axr.set_ylabel("ratio to ce (median / median)")
            axr.set_xlabel("batch size (= meta batch size)")
            axr.axhline(1.0, color="black", lw=0.8)
            axr.set_ylim(bottom=0)
        labels = list(handles)
        hs = [handles[v] for v in labels]
        if extra_meta:
            ks = sorted({(b, m) for res_by in groups.values() for (b, m) in res_by if b != m})
            hs.append(Line2D([], [], marker="o", mfc="white", mec="gray", ls="none", ms=7))
            labels.append("hollow: " + ", ".join(f"B {b}, meta {m}" for b, m in ks))
        ncol = min(len(labels), 4 if n > 1 else 2)
        fig.legend(hs, labels, loc="lower center", ncol=ncol, fontsize=10, frameon=False)
        env = data["environment"]
        fig.suptitle(
            f"One training step of L2B/L2RW vs cross-entropy, {_shape(data)} input\n"
            f"{common.machine_label(env)}; torch {env['torch']}",
            fontsize=12,
        )
        nrows_legend = -(-len(labels) // ncol)
        fig.tight_layout(rect=(0, 0.032 * nrows_legend + 0.01, 1, 1))


def write_outputs(prefix: Path, data: dict, final: bool) -> None:
    common.write_json(Path(f"{prefix}.json"), data, indent=1)
    write_csv(Path(f"{prefix}.csv"), data)
    if final and data["results"]:
        write_md(Path(f"{prefix}.md"), data)
        write_png(Path(f"{prefix}.png"), data)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _model_int(items: list[str], flag: str) -> dict[str, int]:
    out = {}
    for it in items:
        name, sep, val = it.partition("=")
        if not sep or not val.isdigit():
            raise SystemExit(f"{flag} expects MODEL=N, got {it!r}")
        out[name] = int(val)
    return out


def _batch_pairs(items: list[str]) -> list[tuple[int, int]]:
    out = []
    for it in items:
        b, sep, m = it.partition(":")
        if not sep or not b.isdigit() or not m.isdigit():
            raise SystemExit(f"--extra-meta expects B:M, got {it!r}")
        out.append((int(b), int(m)))
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default="auto",
        help="where to run (auto: cuda when available); default auto",
    )
    p.add_argument("--models", nargs="+", default=None, help="default: small_cnn preact_resnet18")
    p.add_argument("--classes", nargs="+", type=int, default=[10], help="numbers of classes; default 10")
    p.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        default=None,
        help="batch sizes, meta batch = batch; default 64 128 256 (and 512 on CUDA)",
    )
    p.add_argument(
        "--extra-meta",
        nargs="*",
        default=None,
        metavar="B:M",
        help="extra (batch, meta batch) pairs, run when B is among the batch sizes; default 128:32; "
        "give the flag with no value for none",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=list(VARIANTS),
        help="variants to time (ce is always added: it is the baseline); default: " + " ".join(DEFAULT_VARIANTS),
    )
    p.add_argument(
        "--all-engines",
        action="store_true",
        help="time ce and every l2b engine: " + " ".join(ENGINE_VARIANTS) + " (instead of the default variants)",
    )
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per variant (default 2)")
    p.add_argument(
        "--model-reps",
        nargs="*",
        default=[],
        metavar="MODEL=N",
        help="per-model override of --reps, e.g. preact_resnet18=3",
    )
    p.add_argument(
        "--model-warmup",
        nargs="*",
        default=[],
        metavar="MODEL=N",
        help="per-model override of --warmup, e.g. preact_resnet18=1",
    )
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure peak memory per variant (default on; off with --quick)",
    )
    p.add_argument("--memory-steps", type=int, default=3, help="steps of each CPU memory subprocess (default 3)")
    p.add_argument(
        "--memory-batch-sizes",
        nargs="+",
        type=int,
        default=None,
        help="measure memory only for configurations with these batch sizes (default: all)",
    )
    p.add_argument(
        "--channels-last",
        choices=["off", "on", "both"],
        default="off",
        help="memory format of model and inputs; 'both' times every variant in both formats, "
        "interleaved (variants with the suffix +cl); default off",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=32,
        help="height and width of the random 3-channel images (default 32; smaller only to make tests faster)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: small_cnn, batch 16, reps 2, warm-up 1, no extra meta batch, no memory "
        "unless --memory; explicit flags still win",
    )
    p.add_argument(
        "--out-prefix",
        default=None,
        help="output path without extension; '{device}' is replaced by the device kind; "
        "default benchmarks/results/step_cost-{device}",
    )
    p.add_argument("--note", action="append", default=[], help="free text stored in the results (repeatable)")
    p.add_argument(
        "--append",
        action="store_true",
        help="keep the configurations already in <out-prefix>.json (from an earlier run, whose "
        "command is kept too) and measure only the missing ones",
    )
    p.add_argument(
        "--from-json",
        default=None,
        metavar="PATH",
        help="do not measure: redraw .md and .png (and .csv) next to the given .json",
    )
    p.add_argument(
        "--_memory-probe",
        nargs=5,
        default=None,
        help=argparse.SUPPRESS,
        metavar=("MODEL", "CLASSES", "BATCH", "META", "VARIANT"),
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args._memory_probe is not None:
        memory_probe(args)
        return
    if args.from_json:
        path = Path(args.from_json)
        write_outputs(path.with_suffix(""), json.loads(path.read_text()), final=True)
        print(f"redrew {path.with_suffix('.md')} and {path.with_suffix('.png')}")
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available")
    q = args.quick
    models = args.models or (["small_cnn"] if q else ["small_cnn", "preact_resnet18"])
    batches = args.batch_sizes or ([16] if q else [64, 128, 256] + ([512] if device.type == "cuda" else []))
    extra_meta = args.extra_meta if args.extra_meta is not None else ([] if q else ["128:32"])
    extra = _batch_pairs(extra_meta)
    reps = args.reps if args.reps is not None else (2 if q else 5)
    warmup = args.warmup if args.warmup is not None else (1 if q else 2)
    model_reps = _model_int(args.model_reps, "--model-reps")
    model_warm = _model_int(args.model_warmup, "--model-warmup")
    memory = args.memory if args.memory is not None else not q
    if args.all_engines and args.variants:
        raise SystemExit("--all-engines and --variants both choose the variants: give one")
    if any(k < 2 for k in args.classes):
        raise SystemExit("--classes must be >= 2")
    base_variants = list(args.variants or (ENGINE_VARIANTS if args.all_engines else DEFAULT_VARIANTS))
    if "ce" not in base_variants:
        base_variants.insert(0, "ce")
    variants = {
        "off": base_variants,
        "on": [v + CL for v in base_variants],
        "both": base_variants + [v + CL for v in base_variants],
    }[args.channels_last]
    if reps < 1 or warmup < 0:
        raise SystemExit("--reps must be >= 1 and --warmup >= 0")

    kind = device_kind(device)
    prefix = Path((args.out_prefix or str(common.RESULTS / "step_cost-{device}")).replace("{device}", kind))
    configs = []
    for model in models:
        for k in args.classes:
            for b in batches:
                configs.append(Config(model, k, b, b, args.image_size))
                configs += [Config(model, k, b, m, args.image_size) for eb, m in extra if eb == b]
    data = {
        "command": common.command(__file__, argv),
        "argv": argv,
        "device": device.type,
        "device_kind": kind,
        "environment": common.environment(device),
        "args": {
            "models": models,
            "classes": args.classes,
            "batch_sizes": batches,
            "extra_meta": extra,
            "reps": reps,
            "warmup": warmup,
            "model_reps": model_reps,
            "model_warmup": model_warm,
            "memory": memory,
            "memory_steps": args.memory_steps,
            "memory_batch_sizes": args.memory_batch_sizes,
            "channels_last": args.channels_last,
            "variants": variants,
            "seed": SEED,
            "optimizer": dict(OPTIM, name="SGD"),
            "in_shape": [3, args.image_size, args.image_size],
        },
        "notes": list(args.note),
        "results": [],
    }
    saved = Path(f"{prefix}.json")
    if args.append and saved.exists():
        prev = json.loads(saved.read_text())
        if prev.get("device_kind") != kind:
            raise SystemExit(f"--append: {saved} holds {prev.get('device_kind')} results, not {kind}")
        earlier = {k: prev.get(k) for k in ("command", "environment", "args", "total_seconds")}
        data["earlier_runs"] = prev.get("earlier_runs", []) + [earlier]
        data["notes"] = prev.get("notes", []) + data["notes"]
        data["results"] = prev["results"]
        done = [r["config"] for r in prev["results"]]
        configs = [c for c in configs if c.__dict__ not in done]
    start, log = time.perf_counter(), common.elapsed_log()
    log(
        f"device {kind} ({common.machine_label(data['environment'])}), torch {torch.__version__}, "
        f"{len(configs)} configurations x {len(variants)} variants -> {prefix}.*"
    )
    for i, cfg in enumerate(configs):
        r = model_reps.get(cfg.model, reps)
        w = model_warm.get(cfg.model, warmup)
        mem = memory and (args.memory_batch_sizes is None or cfg.batch in args.memory_batch_sizes)
        log(
            f"configuration {i + 1}/{len(configs)}: {cfg.label}, {w} warm-up + {r} reps, "
            f"memory {'on' if mem else 'off'}"
        )
        res = measure_config(cfg, variants, device, r, w, mem, args.memory_steps, threads, log)
        res["elapsed_s"] = time.perf_counter() - start
        res["command"] = data["command"]
        res["memory_steps"] = args.memory_steps if mem and device.type == "cpu" else (1 if mem else None)
        res["loadavg_after"] = common.loadavg()
        data["results"].append(res)
        write_outputs(prefix, data, final=False)
    data["total_seconds"] = time.perf_counter() - start
    write_outputs(prefix, data, final=True)
    log(f"done in {data['total_seconds']:.0f}s: wrote {prefix}.json/.csv/.md/.png")


if __name__ == "__main__":
    main()
