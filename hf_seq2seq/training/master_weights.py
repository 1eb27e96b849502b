"""bf16 weights with an fp32 master copy (``--bf16_weights``; ``benchmarks/bench_train.py --dtype bf16-master``).

The model that runs forward and backward holds bf16 parameters, so its matmuls read half the bytes of fp32 and
need no autocast casts; AdamW updates an fp32 copy of every parameter. bf16 keeps 8 significant bits: an update
smaller than half the spacing between neighbouring bf16 values (2^-9 to 2^-8 of the weight) rounds away, so bf16
weights stepped directly stop moving once the updates are that small; the fp32 master accumulates those updates
until they show in the rounded weights. This is the "master copy of weights" of Micikevicius et al. (2018), *Mixed
Precision Training*, section 3.1, with bf16 (no loss scaling needed: bf16 has fp32's exponent range).

One step of :class:`MasterWeightAdamW`:

1. :meth:`~MasterWeightAdamW.grads_to_master` casts each bf16 gradient into its master's fp32 ``.grad`` (once per
   step, like ``GradScaler.unscale_``): gradient clipping and the finiteness check run on these;
2. AdamW steps the masters (its moments are fp32 too);
3. each master is copied into its bf16 parameter, rounded to nearest.

Torch and Accelerate have no such mode for bf16 (Accelerate's ``mixed_precision="bf16"`` is autocast over fp32
weights; its FSDP2 path keeps fp32 sharded weights and computes in bf16 through ``MixedPrecisionPolicy``, which is
the way to get this under FSDP), so the class is a thin subclass of ``torch.optim.AdamW``: the LR schedulers,
Accelerate's optimizer wrapper and ``clip_grad_norm_`` see an ordinary optimizer.

Bytes per parameter: 2 (bf16 weight) + 2 (bf16 gradient) + 4 (master) + 4 (fp32 gradient, during the step) + 8
(AdamW moments) = 20, against 16 for fp32 training: the saving is in activations and matmul bandwidth, not in the
optimizer's state. Gradients are accumulated (``--gradient_accumulation_steps``) and all-reduced (DDP) in bf16.
The checkpoint (``state_dict``) holds the masters beside AdamW's state; :meth:`~MasterWeightAdamW.fp32_state_dict`
and :meth:`~MasterWeightAdamW.fp32_model` give the masters under the model's own names, for saved model folders.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch

MASTER_KEY = "fp32_master_weights"


class MasterWeightAdamW(torch.optim.AdamW):
    """AdamW over fp32 master copies of (bf16) model parameters.

    ``params``: the model's parameters or parameter groups (dicts with ``"params"`` and per-group options), as for
    ``torch.optim.AdamW``; the other keyword arguments are AdamW's. The model's parameters keep their dtype;
    ``step`` writes the updated masters into them.
    """

    def __init__(self, params, **adamw_kwargs):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.model_params: list[torch.Tensor] = []
        master_groups = []
        for group in groups:
            own = list(group["params"])
            self.model_params += own
            masters = [p.detach().to(torch.float32, copy=True) for p in own]
            master_groups.append({**group, "params": masters})
        super().__init__(master_groups, **adamw_kwargs)
        self.master_params = [m for g in self.param_groups for m in g["params"]]
        self._grads_ready = False

    @torch.no_grad()
    def grads_to_master(self) -> list[torch.Tensor]:
        """Cast the model's gradients into the masters' fp32 ``.grad`` (once per step); return the masters, whose
        gradients clipping must see."""
        if not self._grads_ready:
            for p, m in zip(self.model_params, self.master_params):
                m.grad = None if p.grad is None else p.grad.to(torch.float32)
            self._grads_ready = True
        return self.master_params

    @torch.no_grad()
    def step(self, closure=None):
        # a closure would recompute the bf16 model's gradients after their cast to the masters: never right
        if closure is not None:
            raise ValueError("MasterWeightAdamW.step does not take a closure")
        self.grads_to_master()
        super().step()
        torch._foreach_copy_(self.model_params, self.master_params)  # round to nearest bf16
        self._grads_ready = False

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for p in self.model_params:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()
        self._grads_ready = False

    # -- checkpoints: the masters travel with AdamW's state, and the model is rounded from them on load
    def state_dict(self) -> dict:
        state = super().state_dict()
        state[MASTER_KEY] = [m.detach() for m in self.master_params]
        return state

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        masters = state_dict.pop(MASTER_KEY, None)
        if masters is None:
            raise ValueError(
                "the optimizer state has no fp32 master weights: it was saved without --bf16_weights; resume it "
                "without --bf16_weights"
            )
        if len(masters) != len(self.master_params):
            raise ValueError(
                f"the optimizer state has {len(masters)} fp32 master weights for {len(self.master_params)} "
                "parameters: it was saved for another model"
            )
        super().load_state_dict(state_dict)
        for m, saved, p in zip(self.master_params, masters, self.model_params):
            m.copy_(saved)
            p.copy_(m)

    # -- saved models: the masters under the model's own names
    def _master_of(self) -> dict[int, torch.Tensor]:
        return {p.data_ptr(): m for p, m in zip(self.model_params, self.master_params)}

    def fp32_state_dict(self, state_dict: dict) -> OrderedDict:
        """``state_dict`` (of the model, or a wrapper's with the same tensors) with every parameter replaced by its
        fp32 master (tied names keep sharing one tensor) and floating-point buffers cast to fp32."""
        master_of = self._master_of()
        out = (
            OrderedDict()
        )  # Accelerate drops tied duplicates (safetensors refuses them) only from an OrderedDict
        for name, value in state_dict.items():
            master = master_of.get(value.data_ptr()) if value.numel() else None
            if master is not None and master.shape == value.shape:
                out[name] = master.detach()
            else:
                out[name] = value.float() if value.is_floating_point() else value
        return out

    def save_state_pre_hook(self, models, weights: list[dict], output_dir: str) -> None:
        """For ``accelerator.register_save_state_pre_hook``: a checkpoint's ``model.safetensors`` gets the masters
        (what checkpoint averaging reads); ``--resume`` rounds them into the model again."""
        weights[:] = [self.fp32_state_dict(w) for w in weights]

    @torch.no_grad()
    def fp32_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """An fp32 copy of ``model`` (unwrapped) holding the master weights: what a saved model folder gets."""
        master_of = self._master_of()
        clone = copy.deepcopy(model).float()
        for (_, p), (_, q) in zip(model.named_parameters(), clone.named_parameters()):
            master = master_of.get(p.data_ptr())
            if master is not None:
                q.copy_(master)
        return clone
