"""``hf-seq2seq push``: upload a saved model folder to the Hub in one commit."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence

from .common import fail


def push_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-seq2seq push",
        description="Upload a saved model folder (weights, config, code, tokenizer, card, images) to the Hugging "
        "Face Hub in one commit. The endpoint is HF_ENDPOINT (default https://huggingface.co).",
    )
    parser.add_argument("--model", required=True, help="saved model folder (written by training or the demo)")
    parser.add_argument("--repo_id", required=True, help="USER/NAME or ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument(
        "--revision", default=None, help="branch to push to (created if missing; default main)"
    )
    parser.add_argument("--commit_message", default=None, help="commit message")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the cached login)")
    args = parser.parse_args(argv)
    from ..hub import hub_error_message, hub_errors, push_model_folder

    try:
        info = push_model_folder(
            args.model,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            token=args.token,
        )
    # the Hub's answer, no answer (network, HF_ENDPOINT), a bad folder or repo id
    except (*hub_errors(), ValueError) as err:
        return fail(parser.prog, hub_error_message(err) or err)
    with contextlib.suppress(AttributeError):
        print(info.commit_url)
    return 0
