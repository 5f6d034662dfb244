"""Data parallelism: two gloo processes on shards give the weights and update of one process.

Two CPU processes (torch.multiprocessing.spawn, a FileStore in tmp_path) each hold a shard of the
noisy batch (7 = 4 + 3) and of the meta batch (5 = 3 + 2) and train a float64 MLP (a small conv
net on masks, with per-pixel weights) wrapped in DistributedDataParallel for three steps of SGD
with momentum and weight decay. The reference is
one process on the concatenated batches. Everything the workers need to report is written to
tmp_path and compared in the test process.
"""

from __future__ import annotations

import copy
import datetime

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn

from l2b import distributed as l2b_dist
from l2b.meta import normalize_scores, weights_from_scores
from l2b.methods import Batch, StepContext, create_method, mixup

pytestmark = pytest.mark.skipif(
    not (torch_dist.is_available() and torch_dist.is_gloo_available()),
    reason="needs torch.distributed with the gloo backend",
)

WORLD, D, K, B, M, STEPS = 2, 5, 3, 7, 5, 3
# name -> create_method arguments; every one runs 3 steps on both sides
CONFIGS = {
    "l2b": dict(name="l2b"),
    "l2rw": dict(name="l2rw"),
    "ce": dict(name="ce"),
    "l2b-reverse-softmax": dict(name="l2b", engine="reverse", normalize="softmax", temperature=0.01),
    "l2rw-reverse": dict(name="l2rw", engine="reverse"),
    "l2b-sigmoid-clip": dict(name="l2b", normalize="sigmoid", clip_grad=0.05),
    "l2b-mixup": dict(name="l2b", mixup=True),
    "bootstrap-soft-mixup-clip": dict(name="bootstrap-soft", mixup=True, clip_grad=0.05),
    # segmentation: masks (B, S, S), a small conv net's logits (B, K, S, S), weights per pixel
    "l2b-masks": dict(name="l2b"),
    "l2rw-reverse-masks": dict(name="l2rw", engine="reverse"),
    "l2b-softmax-masks": dict(name="l2b", normalize="softmax", temperature=0.01),  # scale-sensitive
}
S = 4  # the masks' side


def is_masks(key: str) -> bool:
    return key.endswith("-masks")


def make_model(masks: bool = False) -> nn.Module:
    torch.manual_seed(0)
    if masks:
        return nn.Sequential(nn.Conv2d(D, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, K, 3, padding=1)).double()
    return nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, K)).double()


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-3)


def batches(seed: int, masks: bool = False):
    """STEPS global (noisy, meta) batches, float64: features (N, D) and labels (N,), or images
    (N, D, S, S) and masks (N, S, S)."""
    g = torch.Generator().manual_seed(seed)
    x_shape, y_shape = ((D, S, S), (S, S)) if masks else ((D,), ())
    out = []
    for _ in range(STEPS):
        x = torch.randn(B, *x_shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, K, (B, *y_shape), generator=g)
        mx = torch.randn(M, *x_shape, generator=g, dtype=torch.float64)
        my = torch.randint(0, K, (M, *y_shape), generator=g)
        out.append((x, y, mx, my))
    return out


def config_args(cfg: dict) -> tuple[str, dict]:
    opts = dict(cfg)
    return opts.pop("name"), opts


def _check_collectives(ctx: l2b_dist.DistContext) -> dict:
    r = ctx.rank
    res: dict = {"is_main": l2b_dist.is_main(), "rank": l2b_dist.get_rank(), "world": l2b_dist.get_world_size()}
    l2b_dist.barrier()
    res["broadcast"] = l2b_dist.broadcast_object({"run": f"from-{r}"})
    idx = torch.arange(10, 17)
    res["shard"] = l2b_dist.shard(idx, r, WORLD)
    res["gather_1d"] = l2b_dist.gather_cat(res["shard"])
    res["gather_2d"] = l2b_dist.gather_cat(torch.full((r + 1, 3), float(r), dtype=torch.float64))
    res["gather_empty"] = l2b_dist.gather_cat(l2b_dist.shard(torch.tensor([5]), r, WORLD))
    res["gather_bool"] = l2b_dist.gather_cat(torch.tensor([True, False, bool(r)][: 3 - r]))
    # normalisation over the replicas' columns of one (2, B) score matrix
    raw = torch.randn(2, B, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cols = l2b_dist.shard(torch.arange(B), r, WORLD)
    for name, t in (("org", 1.0), ("softmax", 0.3), ("sigmoid", 1.0)):
        w = normalize_scores(raw[:, cols], normalize=name, temperature=t, collective=ctx)
        res[f"norm_{name}"] = l2b_dist.gather_cat(w.T.contiguous()).T
    # all-zero detection is global: positive scores on rank 1 only, then on no rank
    logits, pseudo = torch.zeros(len(cols), K, dtype=torch.float64), torch.zeros(len(cols), dtype=torch.long)
    some = torch.full((2, len(cols)), -1.0 if r == 0 else 0.5, dtype=torch.float64)
    none = torch.full((2, len(cols)), -1.0, dtype=torch.float64)
    res["all_zero_some"] = weights_from_scores(
        some, pseudo, logits, 0.0, rows=2, normalize="org", temperature=1.0, collective=ctx
    ).all_zero
    res["all_zero_none"] = weights_from_scores(
        none, pseudo, logits, 0.0, rows=2, normalize="org", temperature=1.0, collective=ctx
    ).all_zero
    return res


def _check_refusals(ctx: l2b_dist.DistContext) -> dict:
    """The error messages of the misuses step() refuses."""
    ((x, y, mx, my),) = batches(1)[:1]
    cols, mcols = l2b_dist.shard(torch.arange(B), ctx.rank, WORLD), l2b_dist.shard(torch.arange(M), ctx.rank, WORLD)
    msgs = {}
    plain = make_model()
    ddp = l2b_dist.wrap_ddp(make_model(), ctx)
    cases = {
        "fused": (create_method("l2b", engine="fused"), ddp, ctx),
        "not_wrapped": (create_method("l2b"), plain, ctx),
        "no_dist": (create_method("ce"), ddp, None),
    }
    for key, (method, model, dist) in cases.items():
        try:
            method.step(
                model,
                make_optimizer(model),
                Batch(x[cols], y[cols], meta_inputs=mx[mcols], meta_labels=my[mcols]),
                StepContext(num_classes=K, dist=dist),
            )
            msgs[key] = None
        except ValueError as e:
            msgs[key] = str(e)
    try:
        l2b_dist.convert_sync_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), ctx)
        msgs["sync_bn"] = None
    except ValueError as e:
        msgs["sync_bn"] = str(e)
    return msgs


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    ctx = l2b_dist.setup(
        rank=rank,
        world_size=WORLD,
        device="cpu",
        init_method=f"file://{init_file}",
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        results: dict = {"collectives": _check_collectives(ctx), "refusals": _check_refusals(ctx)}
        for seed, (key, cfg) in enumerate(CONFIGS.items()):
            name, opts = config_args(cfg)
            model = l2b_dist.wrap_ddp(make_model(is_masks(key)), ctx)
            opt = make_optimizer(model)
            method = create_method(name, **opts)
            gen = torch.Generator().manual_seed(100 + seed)
            steps = []
            for x, y, mx, my in batches(seed, is_masks(key)):
                cols = l2b_dist.shard(torch.arange(B), rank, WORLD)
                mcols = l2b_dist.shard(torch.arange(M), rank, WORLD)
                out = method.step(
                    model,
                    opt,
                    Batch(x[cols], y[cols], meta_inputs=mx[mcols], meta_labels=my[mcols]),
                    StepContext(num_classes=K, generator=gen, dist=ctx),
                )
                steps.append(
                    {
                        "loss": out.loss,
                        "stats": dict(out.stats),
                        "alpha": None if out.alpha is None else l2b_dist.gather_cat(out.alpha),
                        "beta": None if out.beta is None else l2b_dist.gather_cat(out.beta),
                        "pseudo": None if out.pseudo_labels is None else l2b_dist.gather_cat(out.pseudo_labels),
                        "local_size": len(cols),
                    }
                )
            results[key] = {
                "steps": steps,
                "params": copy.deepcopy(model.module.state_dict()),
                "momentum": [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()],
                "generator": gen.get_state(),
            }
        torch.save(results, f"{out_dir}/rank{rank}.pt")
        # Both ranks leave together, as run_experiment's processes do: a rank that tore its
        # connections down while the other was still saving aborted it in gloo's teardown
        # ("terminate called without an active exception", seen once in CI under load).
        l2b_dist.barrier()
    finally:
        l2b_dist.shutdown()


def _reference(key: str, seed: int) -> dict:
    """One process on the concatenated batches; mixup as the replicas do it (within each shard)."""
    name, opts = config_args(CONFIGS[key])
    use_mixup = opts.pop("mixup", False)
    method = create_method(name, **opts)
    model = make_model(is_masks(key))
    opt = make_optimizer(model)
    gen = torch.Generator().manual_seed(100 + seed)
    steps = []
    for x, y, mx, my in batches(seed, is_masks(key)):
        targets = y
        if use_mixup:  # every replica starts from the same generator state and mixes its shard
            state, parts = gen.get_state(), []
            for r in range(WORLD):
                gen.set_state(state)
                cols = l2b_dist.shard(torch.arange(B), r, WORLD)
                parts.append(mixup(x[cols], y[cols], K, alpha=method.mixup_alpha, generator=gen, shard=r))
            x, targets = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        out = method.step(
            model, opt, Batch(x, targets, meta_inputs=mx, meta_labels=my), StepContext(num_classes=K, generator=gen)
        )
        steps.append(out)
    return {
        "steps": steps,
        "params": model.state_dict(),
        "momentum": [opt.state[p]["momentum_buffer"] for p in model.parameters()],
        "generator": gen.get_state(),
    }


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(str(tmp / "store"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("key", list(CONFIGS))
def test_two_replicas_match_one_process_on_the_concatenated_batch(replicas, key):
    ref = _reference(key, list(CONFIGS).index(key))
    for r, res in enumerate(replicas):
        got = res[key]
        assert [s["local_size"] for s in got["steps"]] == [4 - r] * STEPS  # unequal shards: 4 + 3
        for i, (s, o) in enumerate(zip(got["steps"], ref["steps"])):
            assert s["loss"] == pytest.approx(o.loss, rel=1e-9), f"rank {r} step {i} loss"
            if o.alpha is None:
                assert s["alpha"] is None
                continue
            close(s["alpha"], o.alpha, f"rank {r} step {i} alpha")
            close(s["beta"], o.beta, f"rank {r} step {i} beta")
            assert torch.equal(s["pseudo"], o.pseudo_labels)
            assert s["stats"]["meta_loss"] == pytest.approx(o.stats["meta_loss"], rel=1e-9)
            assert s["stats"]["all_zero"] == o.stats["all_zero"]
            if "grad_norm" in o.stats:
                assert s["stats"]["grad_norm"] == pytest.approx(o.stats["grad_norm"], rel=1e-9)
        for k, v in ref["params"].items():
            close(got["params"][k], v, f"rank {r} parameter {k}")
        for a, b in zip(got["momentum"], ref["momentum"]):
            close(a, b, f"rank {r} momentum buffer")
        assert torch.equal(got["generator"], ref["generator"])  # generators stay in step (mixup included)
    if CONFIGS[key]["name"] in ("l2b", "l2rw"):  # the weights are not trivially uniform
        a = ref["steps"][-1].alpha
        assert float(a.max() - a.min()) > 1e-3


def test_global_normalisation_gather_and_shard(replicas):
    raw = torch.randn(2, B, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for r, res in enumerate(replicas):
        c = res["collectives"]
        assert c["is_main"] == (r == 0) and c["rank"] == r and c["world"] == WORLD
        assert c["broadcast"] == {"run": "from-0"}
        assert c["shard"].tolist() == ([10, 11, 12, 13] if r == 0 else [14, 15, 16])
        assert c["gather_1d"].tolist() == list(range(10, 17))
        assert c["gather_2d"].tolist() == [[0.0] * 3] + [[1.0] * 3] * 2
        assert c["gather_empty"].tolist() == [5]
        assert c["gather_bool"].tolist() == [True, False, False, True, False]
        assert c["gather_bool"].dtype == torch.bool
        for name, t in (("org", 1.0), ("softmax", 0.3), ("sigmoid", 1.0)):
            expected = normalize_scores(raw, normalize=name, temperature=t)
            torch.testing.assert_close(c[f"norm_{name}"], expected, rtol=1e-12, atol=1e-15)
            assert float(c[f"norm_{name}"].sum()) == pytest.approx(1.0)
        assert c["all_zero_some"] is False and c["all_zero_none"] is True


def test_misuse_is_refused_with_a_reason(replicas):
    for res in replicas:
        m = res["refusals"]
        assert "engine='fused' is not supported under data parallelism" in m["fused"]
        assert "not wrapped in DistributedDataParallel" in m["not_wrapped"]
        assert "pass dist=" in m["no_dist"]
        assert "SyncBatchNorm needs CUDA" in m["sync_bn"]


def test_shard_and_gather_in_one_process(monkeypatch):
    idx = torch.arange(7)
    parts = [l2b_dist.shard(idx, r, 3) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4], [5, 6]]
    assert torch.equal(l2b_dist.gather_cat(idx), idx)  # no process group: the tensor itself
    assert l2b_dist.is_main() and l2b_dist.get_world_size() == 1 and l2b_dist.broadcast_object(3) == 3
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert l2b_dist.setup_from_env() is None  # not launched for data parallelism
    with pytest.raises(ValueError, match="rank must be in"):
        l2b_dist.shard(idx, 3, 3)
