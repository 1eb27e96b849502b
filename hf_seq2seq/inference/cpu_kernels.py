"""CPU inference kernels: a package-side optimisation of a loaded model, applied by the inference path.

The model code that ships to the Hub (``hf_seq2seq/models/``) is plain torch: ``self.proj(x)``, ``nn.GRU``,
``torch.tanh``. Eager fp32 CPU inference (every ``generate()`` step) then pays for ATen's dispatch choices, measured
on this project's AMD EPYC (AVX-512) with 1 thread, process CPU time (docs/benchmarks.md):

- ``nn.Linear`` goes to MKL's sgemm, which takes a slower code path on AMD CPUs. oneDNN's matmul (dispatched on the
  ISA; the kernel inductor's CPU backend calls) is 2.2x faster at 160 rows: (160, 256) x (256, 8000) 6.7 -> 3.0 ms.
- A decoding step at batch 1 reads ~20 MB of weights for little arithmetic, so the weights' layout decides. As
  inference engines prepack theirs, the weights are laid out once for the kernel that reads them fastest
  (:func:`_relaid`): one row (greedy, batch 1) takes MKL's gemv over W^T (in, out), which streams it 1.6x faster
  than ``nn.Linear`` reads W; more rows take oneDNN's blocked layout (beam 5 at batch 1: 2x faster).
- ``torch.tanh`` on float CPU tensors goes to MKL's VML: 3.4 ms for a (160, 20, 512) tensor, where ``torch.sigmoid``
  takes 0.35 ms; ``tanh(x) = 2 sigmoid(2x) - 1`` is 5x faster (max abs. difference 2e-7).
- ``nn.LSTM`` on CPU runs through oneDNN, which re-packs the weights on every call: a 2-layer 512-unit LSTM step
  took 5.0 ms through oneDNN and 1.2 ms through ATen's kernels at batch 1 (even at about 48 rows); a one-step call
  of ``nn.GRU`` / ``nn.LSTM`` also pays for the general recurrence, which the written-out cell step avoids.

:func:`optimize_for_cpu_inference` swaps, in place, the class of the modules that benefit for a subclass with the
same parameters and a forward that takes the faster kernel when the call is eager fp32 CPU inference (no autograd
recording, not traced, compiled or exported: :func:`cpu_inference`) and the module's own forward otherwise:

==========================  =====================================================================================
``nn.Linear``               :class:`CPUInferenceLinear`: oneDNN's matmul / gemv over pre-laid-out weights
``nn.Tanh``                 :class:`CPUInferenceTanh`: the sigmoid form on large tensors
``nn.GRU`` / ``nn.LSTM``    :class:`CPUInferenceGRU` / :class:`CPUInferenceLSTM`: a one-step call (a decoder step)
                            runs the written-out cell with the kernels above; an LSTM call of one source or of a
                            small one-step batch runs ATen's kernels instead of oneDNN's re-packing ones
additive attention scores   ``v^T tanh(x)`` as ``2 v^T sigmoid(2x) - sum(v)``: two passes over (B, T, S, A), not four
==========================  =====================================================================================

Parameters, buffers, hooks and ``state_dict`` keys are untouched, so ``save_pretrained`` after it writes the same
files, and training (autograd on) runs the plain ops; :func:`restore_plain_modules` swaps the classes back. The
result is the same function; last-bit rounding may differ.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.weak import WeakIdKeyDictionary

__all__ = [
    "CPUInferenceGRU",
    "CPUInferenceLSTM",
    "CPUInferenceLinear",
    "CPUInferenceTanh",
    "cpu_inference",
    "fast_linear",
    "fast_tanh",
    "onednn_available",
    "optimize_for_cpu_inference",
    "restore_plain_modules",
]

# Weights under this size (a few hundred KB) stay as they are: they sit in cache, and a second copy buys nothing.
_RELAY_MIN_WEIGHT = 1 << 17
# oneDNN's fused tanh takes a slow kernel below 8 rows: fused from 8 rows up.
_FUSE_MIN_ROWS = 8
# The sigmoid form of tanh is 3 ops instead of 1: it pays from a few thousand elements.
_SIGMOID_TANH_MIN_NUMEL = 4096
# oneDNN's LSTM and ATen's break even at about this many rows of a one-step call.
_ONEDNN_LSTM_MIN_ROWS = 48
# the private oneDNN ops this module calls; looked up once, guarded (a torch without them: no-op)
_ONEDNN_OPS = ("_linear_pointwise", "_reorder_linear_weight")
_onednn: bool | None = None
# weight -> {one_row: ((version, storage, shape), laid-out copy)}; an entry goes with its weight
_RELAID: WeakIdKeyDictionary = WeakIdKeyDictionary()


# ---------------------------------------------------------------------------------------------------- kernels
def onednn_available() -> bool:
    """torch was built with oneDNN and has the ops used here (``torch.ops.mkldnn._linear_pointwise``,
    ``_reorder_linear_weight``): private ops, so looked up once and guarded."""
    global _onednn
    if _onednn is None:
        try:
            ops = torch.ops.mkldnn
            _onednn = bool(torch.backends.mkldnn.is_available()) and all(hasattr(ops, n) for n in _ONEDNN_OPS)
        except Exception:  # a torch without the namespace or the backend module
            _onednn = False
    return _onednn


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
    through the kernel and weight layout that are fastest for its row count (see the module docstring)."""
    rows = x.numel() // x.shape[-1] if x.dim() and x.shape[-1] else 0
    if rows and cpu_inference(x) and onednn_available():
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


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh(x)``; for CPU inference on large tensors ``2 sigmoid(2x) - 1`` (MKL's VML tanh is 5x slower)."""
    if x.numel() >= _SIGMOID_TANH_MIN_NUMEL and cpu_inference(x):
        return torch.sigmoid(x * 2).mul_(2).sub_(1)
    return torch.tanh(x)


# ---------------------------------------------------------------------------------------------------- modules
class CPUInferenceLinear(nn.Linear):
    """``nn.Linear`` through :func:`fast_linear` (the same parameters; plain ``F.linear`` outside CPU inference)."""

    _plain_class = nn.Linear

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fast_linear(input, self.weight, self.bias)


class CPUInferenceTanh(nn.Tanh):
    """``nn.Tanh`` through :func:`fast_tanh`."""

    _plain_class = nn.Tanh

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fast_tanh(input)


def _without_onednn(forward, input, hx):
    """``forward(input, hx)`` with oneDNN off (ATen's RNN kernels; the same function). The switch is process-wide,
    so it is restored at once; only the enabled flag is touched."""
    try:
        previous = torch.backends.mkldnn.set_flags(False, None, None, None)[0]
    except (AttributeError, TypeError):  # another torch's signature: the plain call
        return forward(input, hx)
    try:
        return forward(input, hx)
    finally:
        torch.backends.mkldnn.set_flags(previous, None, None, None)


def _cell_step(rnn: nn.RNNBase, x: torch.Tensor, hx: Any) -> tuple[torch.Tensor, Any]:
    """One time step of a unidirectional batch-first ``nn.GRU`` / ``nn.LSTM`` in eval mode: x (B, in), hx as the
    module takes it ((L, B, H), or a pair for the LSTM) -> the top layer's output (B, H) and the new hx. The same
    weights and cell equations as ATen's ``gru_cell`` / ``lstm_cell``, written out so the matmuls go through
    :func:`fast_linear` and the tanh through :func:`fast_tanh`."""
    lstm = isinstance(hx, tuple)
    h0, c0 = hx if lstm else (hx, None)
    hidden, cells = [], []
    for layer in range(rnn.num_layers):
        w_ih, w_hh, b_ih, b_hh = (
            getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        h = h0[layer]
        if c0 is not None:  # gates i, f, g, o
            gates = fast_linear(x, w_ih, b_ih).add_(fast_linear(h, w_hh, b_hh))
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f).mul_(c0[layer]).add_(torch.sigmoid(i).mul_(fast_tanh(g)))
            x = torch.sigmoid(o).mul_(fast_tanh(c))
            cells.append(c)
        else:  # gates r, z, n: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h
            i_r, i_z, i_n = fast_linear(x, w_ih, b_ih).chunk(3, dim=1)
            h_r, h_z, h_n = fast_linear(h, w_hh, b_hh).chunk(3, dim=1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            n = fast_tanh(h_n.mul_(r).add_(i_n))
            x = (h - n).mul_(z).add_(n)
        hidden.append(x)
    h_n = torch.stack(hidden)
    return x, ((h_n, torch.stack(cells)) if lstm else h_n)


class _CPUInferenceRNN:
    """The forward of :class:`CPUInferenceGRU` / :class:`CPUInferenceLSTM` (mixed in before ``nn.GRU`` /
    ``nn.LSTM``)."""

    def _one_step(self, input, hx) -> bool:
        rnn: Any = self
        return (
            isinstance(input, torch.Tensor)
            and hx is not None
            and rnn.batch_first
            and input.dim() == 3
            and input.shape[1] == 1
            and not rnn.training
            and not rnn.bidirectional
            and rnn.bias
            and not getattr(rnn, "proj_size", 0)
            and cpu_inference(input)
        )

    def _repack_dominates(self, input) -> bool:
        """An LSTM call where oneDNN's per-call weight re-packing costs more than the recurrence: one packed source
        (every batch-1 encoder call: 8.5 ms through oneDNN against 3.9 ms for the Multi30k encoder) or one step of
        fewer than ``_ONEDNN_LSTM_MIN_ROWS`` rows. Never while compiling or tracing (a graph must not branch on its
        batch size, and has no per-call re-packing to avoid)."""
        if not isinstance(self, nn.LSTM) or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return False
        if isinstance(input, PackedSequence):
            return input.data.device.type == "cpu" and int(input.batch_sizes[0]) == 1
        step = input.shape[1] if self.batch_first else input.shape[0]
        rows = input.shape[0] if self.batch_first else input.shape[1]
        return input.device.type == "cpu" and input.dim() == 3 and step == 1 and rows < _ONEDNN_LSTM_MIN_ROWS

    def forward(self, input, hx=None):
        plain = super().forward  # type: ignore[misc]  # nn.GRU / nn.LSTM, after this class in the MRO
        if self._one_step(input, hx):
            out, new = _cell_step(self, input[:, 0], hx)  # type: ignore[arg-type]
            return out.unsqueeze(1), new
        if self._repack_dominates(input):
            return _without_onednn(plain, input, hx)
        return plain(input, hx)


class CPUInferenceGRU(_CPUInferenceRNN, nn.GRU):
    """``nn.GRU`` whose one-step calls in CPU inference run :func:`_cell_step`."""

    _plain_class = nn.GRU


class CPUInferenceLSTM(_CPUInferenceRNN, nn.LSTM):
    """``nn.LSTM`` whose one-step calls in CPU inference run :func:`_cell_step`, and whose small calls avoid
    oneDNN's per-call weight re-packing."""

    _plain_class = nn.LSTM


class _CPUInferenceAdditiveScore:
    """The forward of an additive attention score (``models/attention.py``'s ``AdditiveScore`` and its
    ``ConcatScore``): ``v^T tanh(x) = 2 v^T sigmoid(2x) - sum(v)`` (``v`` has no bias), two passes over the
    (B, T, S, A) sum instead of four, and no VML tanh."""

    def forward(self, query: torch.Tensor, keys: torch.Tensor, precomputed: torch.Tensor) -> torch.Tensor:
        score: Any = self
        if query.dim() not in (2, 3) or not cpu_inference(precomputed):
            return super().forward(query, keys, precomputed)  # type: ignore[misc]
        q = query.unsqueeze(1) if query.dim() == 2 else query
        summed = score.query_proj(q).unsqueeze(2) + precomputed.unsqueeze(1)
        hidden = torch.sigmoid_(summed.mul_(2))
        weight = score.energy.weight
        scores = nn.functional.linear(hidden, weight).squeeze(-1).mul_(2).sub_(weight.sum())
        return scores.squeeze(1) if query.dim() == 2 else scores


_RNN_CLASSES: dict[type, type] = {nn.GRU: CPUInferenceGRU, nn.LSTM: CPUInferenceLSTM}
_PLAIN_CLASSES: dict[type, type] = {
    nn.Linear: CPUInferenceLinear,
    nn.Tanh: CPUInferenceTanh,
    **_RNN_CLASSES,
}
_SCORE_CLASSES: dict[type, type] = {}  # an additive score class (package or remote code) -> its fast subclass


def _is_additive_score(module: nn.Module) -> bool:
    """A score of ``models/attention.py``'s additive form, recognised by its class (the package's, or the same file
    loaded as remote code) and checked by its parts: ``query_proj``, ``energy`` = ``v`` (A -> 1, no bias)."""
    energy = getattr(module, "energy", None)
    return (
        any(cls.__name__ == "AdditiveScore" for cls in type(module).__mro__)
        and isinstance(getattr(module, "query_proj", None), nn.Linear)
        and isinstance(energy, nn.Linear)
        and energy.out_features == 1
        and energy.bias is None
    )


def _fast_class(module: nn.Module) -> type | None:
    """The class to swap ``module`` to, or None (already swapped, not ours to touch, or wrapped by a hook that
    replaced its ``forward``, as accelerate's offloading does)."""
    if "forward" in module.__dict__ or hasattr(type(module), "_plain_class"):
        return None
    cls = type(module)
    if cls in _PLAIN_CLASSES:  # exactly the torch class: subclasses (quantised, adapters) keep their forward
        return _PLAIN_CLASSES[cls]
    if _is_additive_score(module):
        if cls not in _SCORE_CLASSES:
            _SCORE_CLASSES[cls] = type(
                f"CPUInference{cls.__name__}",
                (_CPUInferenceAdditiveScore, cls),
                {"_plain_class": cls, "__module__": __name__},
            )
        return _SCORE_CLASSES[cls]
    return None


# ---------------------------------------------------------------------------------------------------- the switch
def optimize_for_cpu_inference(model: nn.Module) -> nn.Module:
    """Swap ``model``'s modules (in place) for their CPU inference versions (module docstring) and return it.

    A no-op for a model in training mode, for one with parameters off the CPU or in another dtype than fp32, and
    where oneDNN or its ops are not available; idempotent. The swapped modules still run their plain forward
    whenever autograd records, the call is traced / compiled, or the tensors are not fp32 on the CPU, so
    ``train()``, ``save_pretrained`` (same files, same keys) and exports are unaffected; :func:`restore_plain_modules`
    undoes it."""
    if model.training or not onednn_available():
        return model
    params = list(model.parameters())
    if not params or any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        return model
    for module in model.modules():
        fast = _fast_class(module)
        if fast is not None:
            module.__class__ = fast
    return model


def restore_plain_modules(model: nn.Module) -> nn.Module:
    """Undo :func:`optimize_for_cpu_inference`: every swapped module gets its plain class back."""
    for module in model.modules():
        plain = getattr(type(module), "_plain_class", None)
        if plain is not None:
            module.__class__ = plain
    return model
