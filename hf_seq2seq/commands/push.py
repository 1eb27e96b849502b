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
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    from ..hub import push_model_folder

    try:
        info = push_model_folder(
            args.model,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            token=args.token,
        )
    except HfHubHTTPError as err:  # the Hub answered: its message says why (401, 403, 404, ...)
        return fail(parser.prog, str(err).splitlines()[0])
    except HfHubHTTPError.__mro__[
        1
    ] as err:  # the HTTP client's base error (httpx / httpx2): no answer: network down, proxy, wrong HF_ENDPOINT
        return fail(
            parser.prog,
            f"cannot reach the Hub at {constants.ENDPOINT} ({type(err).__name__}: {err}); check the network "
            "or HF_ENDPOINT",
        )
    except (OSError, ValueError) as err:
        return fail(parser.prog, err)
    with contextlib.suppress(AttributeError):
        print(info.commit_url)
    return 0
