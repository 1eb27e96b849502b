"""``hf-seq2seq export MODEL_DIR OUT_DIR --format ctranslate2|onnx``: a saved model folder for a serving engine."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .common import fail

FORMATS = ("ctranslate2", "onnx")


def export_main(argv: Sequence[str] | None = None) -> int:
    from ..export.ctranslate2_export import QUANTIZATIONS

    parser = argparse.ArgumentParser(
        prog="hf-seq2seq export",
        description="Export a saved model folder for a serving engine: CTranslate2 (Transformer family) or ONNX "
        "(both families: encoder + one decoder step). The tokenizer and generation settings are copied beside it; "
        "translate with `hf-seq2seq translate --engine ctranslate2|onnxruntime --model OUT_DIR`.",
    )
    parser.add_argument("model_dir", help="saved model folder (hf-seq2seq train / save_model_folder)")
    parser.add_argument("out_dir", help="output folder (must be empty unless --force)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="target format")
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default=None,
        help="ctranslate2 only: weight type stored in model.bin (default: float32)",
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    parser.add_argument(
        "--no_check", action="store_true", help="onnx only: skip the onnxruntime-vs-PyTorch check"
    )
    args = parser.parse_args(argv)
    from ..export import ExportError, export_ctranslate2, export_onnx

    try:
        if args.format == "ctranslate2":
            out = export_ctranslate2(args.model_dir, args.out_dir, args.quantization, force=args.force)
        else:
            if args.quantization is not None:
                raise ExportError("--quantization applies to --format ctranslate2 only")
            out = export_onnx(args.model_dir, args.out_dir, force=args.force, check=not args.no_check)
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    print(f"wrote {args.format} export to {out}")
    return 0
