"""What both model families (RNN and Transformer encoder-decoders) share, kept in one place.

Shipped to the Hub beside the modeling files that import it (``save_pretrained`` copies a model file's relative
imports with it), so it imports only torch. Besides the label shift, the output options and
the save that ships the code (``save_with_code``), it holds the CPU
inference kernels both families' ``generate()`` steps use (``fast_linear`` / ``linear_module`` / ``fast_tanh``): here
rather than in ``attention.py``, which only RNN folders ship.

Dimensions: B batch, T target length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

__all__ = [
    "cpu_inference",
    "fast_linear",
    "fast_tanh",
    "linear_module",
    "output_options",
    "shift_tokens_right",
]


def save_with_code(model: Any, auto_class: str | None, save: Callable[[], Any]) -> Any:
    """Run ``save`` (``PreTrainedModel.save_pretrained``) with ``type(model)`` registered for ``auto_class``, so
    that every save (``Seq2SeqTrainer.save_model`` included) writes ``auto_map`` and copies the model's file and its flat
    siblings: the folder then loads with ``trust_remote_code=True`` where this package is absent.

    The registration is undone afterwards: a class registered for an Auto class counts as remote code, and
    ``generate()`` then inspects ``forward``'s signature at every decoding step (measurable on small models)."""
    cls = type(model)
    if auto_class is None or cls._auto_class is not None:  # loaded as remote code, or registered by the user
        return save()
    cls.register_for_auto_class(auto_class)
    try:
        return save()
    finally:
        cls._auto_class = None


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher-forcing decoder inputs from ``labels`` (B, T): ``decoder_start_token_id`` first, then the labels
    shifted one step right, ``-100`` (ignored positions) replaced by ``pad_token_id``. The labels are not changed."""
    shifted = labels.new_empty(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def output_options(config, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
    """The transformers contract for ``forward``: an output option passed as ``None`` takes the config's value."""
    return (
        config.output_attentions if output_attentions is None else output_attentions,
        config.output_hidden_states if output_hidden_states is None else output_hidden_states,
        config.return_dict if return_dict is None else return_dict,
    )


# ---------------------------------------------------------------------------------- CPU inference kernels
# Eager fp32 CPU inference (every generate() step) pays for ATen's dispatch choices, measured on this project's AMD EPYC
# (AVX-512) with 1 thread, process CPU time (docs/benchmarks.md, "The RNN family"):
# - nn.Linear goes to MKL's sgemm, which takes a slower code path on AMD CPUs. oneDNN's matmul (dispatched on the ISA;
#   the kernel inductor's CPU backend calls) is 2.2x faster at 160 rows: (160, 256) x (256, 8000) 6.7 -> 3.0 ms.
# - A decoding step at batch 1 reads ~20 MB of weights for little arithmetic, so the weights' layout decides. As
#   inference engines prepack theirs, the weights are laid out once for the kernel that reads them fastest (see
#   _relaid): one row (greedy, batch 1) takes MKL's gemv over W^T (in, out), which streams it 1.6x faster than
#   nn.Linear reads W (the step's six matmuls: 0.69 -> 0.42 ms); more rows take oneDNN's blocked layout (beam 5
#   at batch 1, 5 rows: 2x faster than oneDNN on W).
# - torch.tanh on float CPU tensors goes to MKL's VML: 3.4 ms for a (160, 20, 512) tensor, where torch.sigmoid (an
#   ATen vectorised kernel) takes 0.35 ms; tanh(x) = 2 sigmoid(2x) - 1 is 5x faster (max abs. difference 2e-7).
# oneDNN's linear computes no autograd, and exported / compiled graphs should keep the plain ops: hence the guard.
_onednn_linear: bool | None = None  # torch.ops.mkldnn's linear and weight packing exist (looked up once)
# Weights under this size (a few hundred KB) stay as they are: they sit in cache, and a second copy buys nothing.
_RELAY_MIN_WEIGHT = 1 << 17
# oneDNN's fused tanh takes a slow kernel below 8 rows: fused from 8 rows up.
_FUSE_MIN_ROWS = 8
# The sigmoid form of tanh is 3 ops instead of 1: it pays from a few thousand elements.
_SIGMOID_TANH_MIN_NUMEL = 4096
# weight -> {one_row: ((version, storage, shape), laid-out copy)}; an entry goes with its weight
_RELAID: WeakIdKeyDictionary = WeakIdKeyDictionary()


def cpu_inference(x: torch.Tensor) -> bool:
    """``x`` is an fp32 CPU tensor of an eager computation that records no gradient (``torch.no_grad`` /
    ``inference_mode``, as in ``generate()``), neither traced (``torch.onnx.export``'s TorchScript path) nor
    compiled or exported by dynamo: the kernels below apply."""
    return (
        not torch.is_grad_enabled()
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def _onednn_available() -> bool:
    global _onednn_linear
    if _onednn_linear is None:
        ops = torch.ops.mkldnn
        _onednn_linear = torch.backends.mkldnn.is_available() and all(
            hasattr(ops, name) for name in ("_linear_pointwise", "_reorder_linear_weight")
        )
    return _onednn_linear


def _relaid(weight: torch.Tensor, rows: int) -> torch.Tensor | None:
    """``weight`` (out, in) laid out for ``rows`` rows: W^T contiguous for one row, oneDNN's packed layout for more.
    Built on first use and kept until the weight changes (an in-place update bumps its version counter; a new
    ``.data`` moves its storage) or is freed; None for a tensor without a version counter (made under
    ``inference_mode``), which is then used as it is."""
    try:
        key = (weight._version, weight.data_ptr(), tuple(weight.shape))
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None
    layouts = _RELAID.setdefault(weight, {})
    one_row = rows == 1
    if one_row not in layouts or layouts[one_row][0] != key:
        laid = weight.t().contiguous() if one_row else torch.ops.mkldnn._reorder_linear_weight(weight, rows)
        layouts[one_row] = (key, laid)
    return layouts[one_row][1]


def fast_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "none"
) -> torch.Tensor:
    """``activation(x W^T + b)`` (``activation`` "none" or "tanh"): ``nn.functional.linear``; for CPU inference
    through the kernel and weight layout that are fastest for its row count (see above). The same function;
    last-bit rounding may differ."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if rows and cpu_inference(x) and _onednn_available():
        laid = _relaid(weight, rows) if weight.numel() >= _RELAY_MIN_WEIGHT else None
        if rows > 1:
            fused = activation if rows >= _FUSE_MIN_ROWS else "none"
            w = weight if laid is None else laid
            y = torch.ops.mkldnn._linear_pointwise(x, w, bias, fused, [None], "")
            return fast_tanh(y) if activation == "tanh" and fused == "none" else y
        if laid is not None:  # one row: gemv over W^T (in, out)
            flat = x.reshape(-1)
            y = torch.mv(laid.t(), flat) if bias is None else torch.addmv(bias, laid.t(), flat)
            y = y.view(*x.shape[:-1], -1)
            return fast_tanh(y) if activation == "tanh" else y
    y = nn.functional.linear(x, weight, bias)
    return fast_tanh(y) if activation == "tanh" else y


def linear_module(module: nn.Module, x: torch.Tensor, activation: str = "none") -> torch.Tensor:
    """``activation(module(x))`` for a plain ``nn.Linear`` through :func:`fast_linear`; any other module (a
    quantised or adapter-wrapped layer) runs its own forward, and so does a hooked one (forward hooks, or a
    ``forward`` replaced on the instance as accelerate's offloading does), so that the hook still sees the call."""
    hooked = module._forward_hooks or module._forward_pre_hooks or "forward" in module.__dict__
    if type(module) is nn.Linear and not hooked:
        return fast_linear(x, module.weight, module.bias, activation)
    y = module(x)
    return fast_tanh(y) if activation == "tanh" else y


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh(x)``; for CPU inference ``2 sigmoid(2x) - 1`` (MKL's VML tanh is 5x slower, see above)."""
    if x.numel() >= _SIGMOID_TANH_MIN_NUMEL and cpu_inference(x):
        return torch.sigmoid(x * 2).mul_(2).sub_(1)
    return torch.tanh(x)
