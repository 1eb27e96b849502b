"""The server's cross-request batcher on a real (tiny, untrained) engine, without HTTP: when a segment waits for
company and when it does not, and that grouped requests get their own results."""

from __future__ import annotations

import asyncio
import time

import pytest
from hub_server import tiny_model, tiny_tokenizer

from hf_seq2seq.inference import GenerateEngine
from hf_seq2seq.serving.batcher import Batcher, SearchOptions

LONG_WAIT_MS = 20_000  # far longer than any engine call here: if a segment waited, the test would see it


def _engine() -> GenerateEngine:
    tokenizer = tiny_tokenizer()
    model = tiny_model("transformer", len(tokenizer))
    return GenerateEngine.from_model(model, tokenizer, max_new_tokens=4)


def _batcher(engine, batches, **options) -> Batcher:
    return Batcher(engine, on_batch=lambda segments, *_: batches.append(segments), **options)


def test_a_lone_request_on_an_idle_server_does_not_wait_for_company():
    engine, batches = _engine(), []
    batcher = _batcher(engine, batches, max_wait_ms=LONG_WAIT_MS)
    (source,) = engine.encode(["drei und zwanzig"])

    async def one():
        start = time.monotonic()
        future, _ = batcher.submit([source], SearchOptions())
        await asyncio.wait_for(
            future, LONG_WAIT_MS / 2000
        )  # half the wait: fails (TimeoutError) if it waited
        return time.monotonic() - start

    try:
        elapsed = asyncio.run(one())
    finally:
        batcher.close()
    assert batches == [1] and elapsed < LONG_WAIT_MS / 2000


def test_requests_arriving_together_wait_for_each_other_and_share_one_engine_call():
    engine, batches = _engine(), []
    (source,) = engine.encode(["drei und zwanzig"])
    # the budget is exactly two copies of the segment: the group leaves as soon as the second one is in
    batcher = _batcher(engine, batches, max_wait_ms=LONG_WAIT_MS, max_batch_tokens=2 * len(source))
    other = engine.encode(["neun"])[0]
    alone = engine.translate_ids([source])[0].hypotheses

    async def run():
        first, _ = batcher.submit([other], SearchOptions())  # an idle server: goes at once
        await asyncio.wait_for(first, LONG_WAIT_MS / 2000)
        # arriving within max_wait of the previous request: these two wait for company and go together
        a, _ = batcher.submit([source], SearchOptions())
        b, _ = batcher.submit([source], SearchOptions())
        return await asyncio.wait_for(asyncio.gather(a, b), LONG_WAIT_MS / 2000)

    try:
        results = asyncio.run(run())
    finally:
        batcher.close()
    assert batches == [1, 2]
    assert [r[0].translation.hypotheses for r in results] == [alone, alone]


def test_batch_wait_choices_are_the_commands_and_a_bad_one_is_one_line():
    from hf_seq2seq.commands.serve import build_parser
    from hf_seq2seq.serving.batcher import BATCH_WAIT_CHOICES

    action = next(a for a in build_parser()._actions if a.dest == "batch_wait")
    assert tuple(action.choices) == BATCH_WAIT_CHOICES and action.default == BATCH_WAIT_CHOICES[0]
    with pytest.raises(ValueError, match=r"^--batch_wait must be one of adaptive, always, got 'sometimes'$"):
        Batcher(_engine(), batch_wait="sometimes")
