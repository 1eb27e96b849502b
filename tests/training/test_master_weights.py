"""bf16 weights with an fp32 master copy (``training.master_weights.MasterWeightAdamW``, issue 18)."""

from __future__ import annotations

import copy

import pytest


def _drift_runs(steps: int = 40, lr: float = 1e-4):
    """Three copies of one tiny MLP (bf16-rounded start) trained on the same batches with AdamW: fp32 weights,
    bf16 weights stepped directly, bf16 weights with fp32 masters. Returns (start, fp32, bf16, master model,
    optimizer of the master run)."""
    import torch

    from hf_seq2seq.training.master_weights import MasterWeightAdamW

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    base = base.to(torch.bfloat16).float()  # every run starts from the same bf16-representable weights
    start = [p.detach().clone() for p in base.parameters()]
    x, y = torch.randn(64, 16), torch.randn(64, 4)
    models = {"fp32": base, "bf16": copy.deepcopy(base).bfloat16(), "master": copy.deepcopy(base).bfloat16()}
    opts = {
        "fp32": torch.optim.AdamW(models["fp32"].parameters(), lr=lr, weight_decay=0.0),
        "bf16": torch.optim.AdamW(models["bf16"].parameters(), lr=lr, weight_decay=0.0),
        "master": MasterWeightAdamW(models["master"].parameters(), lr=lr, weight_decay=0.0),
    }
    for i in range(steps):
        rows = slice(16 * (i % 4), 16 * (i % 4 + 1))
        for name, model in models.items():
            dtype = next(model.parameters()).dtype
            loss = torch.nn.functional.mse_loss(model(x[rows].to(dtype)).float(), y[rows])
            loss.backward()
            opts[name].step()
            opts[name].zero_grad()
    return start, models, opts["master"]


def test_master_weights_keep_the_updates_bf16_weights_round_away():
    """At a learning rate whose updates are mostly below bf16's resolution, bf16 weights stepped directly lose them
    and stay far from the fp32 run; the fp32 masters follow it (and the model computes with their rounding)."""
    import torch

    start, models, opt = _drift_runs()

    def distance(a, b):
        return float(sum(((x.detach().float() - y.detach().float()) ** 2).sum() for x, y in zip(a, b)) ** 0.5)

    fp32 = list(models["fp32"].parameters())
    moved = distance(fp32, start)
    # measured: bf16 0.95 of the fp32 run's movement away from it, masters 0.002, their bf16 rounding 0.1
    assert moved > 0
    assert distance(models["bf16"].parameters(), fp32) > 0.8 * moved  # most updates rounded away
    assert distance(opt.master_params, fp32) < 0.02 * moved
    assert distance(models["master"].parameters(), fp32) < 0.25 * moved
    for p, m in zip(models["master"].parameters(), opt.master_params):
        assert p.dtype == torch.bfloat16 and m.dtype == torch.float32
        assert torch.equal(p, m.to(torch.bfloat16))


def test_master_weights_state_dict_restores_masters_and_refuses_a_plain_adamw_state():
    import torch

    from hf_seq2seq.training.master_weights import MasterWeightAdamW

    _, models, opt = _drift_runs(steps=5)
    fresh_model = copy.deepcopy(models["master"])
    for p in fresh_model.parameters():
        p.data.zero_()
    fresh = MasterWeightAdamW(fresh_model.parameters(), lr=1e-4)
    fresh.load_state_dict(opt.state_dict())
    for a, b in zip(fresh.master_params, opt.master_params):
        assert torch.equal(a, b)
    for a, b in zip(fresh_model.parameters(), models["master"].parameters()):
        assert torch.equal(a, b)  # the model is rounded from the loaded masters
    plain = torch.optim.AdamW(models["fp32"].parameters(), lr=1e-4)
    with pytest.raises(ValueError, match="no fp32 master weights: it was saved without --bf16_weights"):
        fresh.load_state_dict(plain.state_dict())
    state = opt.state_dict()
    state["fp32_master_weights"] = state["fp32_master_weights"][:-1]
    with pytest.raises(ValueError, match="has 3 fp32 master weights for 4 parameters"):
        fresh.load_state_dict(state)


def test_master_weights_step_uses_the_clipped_fp32_gradients():
    """Clipping acts on the masters' fp32 gradients and ``step`` uses them as clipped (it does not cast the bf16
    gradients again): clipped to a norm of 1e-12, AdamW's first step (about lr * g / (|g| + eps)) moves nothing."""
    import torch

    from hf_seq2seq.training.master_weights import MasterWeightAdamW

    moved = {}
    for clip in (None, 1e-12):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 4).bfloat16()
        start = [p.detach().clone() for p in model.parameters()]
        opt = MasterWeightAdamW(model.parameters(), lr=1e-2)
        model(torch.randn(16, 8, dtype=torch.bfloat16)).float().pow(2).sum().backward()
        masters = opt.grads_to_master()
        assert all(m.grad.dtype == torch.float32 for m in masters)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(masters, clip)
        opt.step()
        moved[clip] = any(not torch.equal(p, p0) for p, p0 in zip(model.parameters(), start))
    assert moved == {None: True, 1e-12: False}
