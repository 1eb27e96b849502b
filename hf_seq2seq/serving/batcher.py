"""Cross-request batching: segments from concurrent requests share one engine call.

Each request's non-empty segments go into one bounded queue per model (:meth:`Batcher.submit`, called on the
event loop; it never waits: past ``max_queue`` waiting segments it raises :class:`QueueFull` at once). Worker
threads (``workers``, default 1) take the oldest waiting segment, wait up to ``max_wait_ms`` for company, and add
the waiting segments with the same search options whose lengths are closest to it while the padded batch stays
within ``max_batch_tokens`` source tokens; that group is one :meth:`Engine.translate_ids
<hf_seq2seq.inference.engines.Engine.translate_ids>` call, off the event loop. Results go back to each request in
its own order. A request whose client went away is cancelled: its segments still waiting leave the queue. An engine
exception fails the requests of that group only (:class:`EngineError`); the workers go on. :meth:`Batcher.close`
lets the workers finish what is queued, then stops them.

When a segment waits (``batch_wait``, a choice of :data:`BATCH_WAIT_CHOICES`): ``"adaptive"`` (the default) only when
company is likely, i.e. when the previous request arrived less than ``max_wait_ms`` before it, so a lone request on
an idle server goes at once and batching costs one client nothing; ``"always"`` every segment (a fixed latency cost
for the largest batches).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..inference import Engine, Translation

BATCH_WAIT_CHOICES = ("adaptive", "always")


class QueueFull(Exception):
    """The queue holds ``max_queue`` segments: answer 503 with Retry-After."""


class EngineError(RuntimeError):
    """The engine failed on the batch that held a request's segment; the message is one line."""


@dataclass(frozen=True)
class SearchOptions:
    """What must be equal for segments to share an engine call."""

    num_beams: int | None = None
    n_best: int = 1
    max_new_tokens: int | None = None
    return_scores: bool = False
    return_alignment: bool = False


@dataclass
class _Request:
    """One request's segments; resolved on its event loop when the last one is done."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    results: list
    remaining: int
    attention: bool
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self, index: int, value) -> None:
        with self.lock:
            if self.remaining <= 0:
                return
            self.results[index] = value
            self.remaining -= 1
            finished = self.remaining == 0
        if finished:
            self.loop.call_soon_threadsafe(self._resolve, self.results)

    def fail(self, error: Exception) -> None:
        with self.lock:
            if self.remaining <= 0:
                return
            self.remaining = 0
        self.loop.call_soon_threadsafe(self._resolve, error)

    def _resolve(self, value) -> None:
        if self.future.done():
            return
        if isinstance(value, Exception):
            self.future.set_exception(value)
        else:
            self.future.set_result(value)


@dataclass
class _Segment:
    ids: list[int]
    options: SearchOptions
    request: _Request
    index: int
    queued: float = field(default_factory=time.monotonic)
    wait: float = 0.0  # how long it may wait for company (seconds)
    text: str | None = None  # the segment as sent (its whitespace words are what alignments index)


@dataclass
class SegmentOutput:
    """What a worker returns per segment: the translation and (``attention``) the best hypothesis's weights."""

    translation: Translation
    attention: object | None = None  # numpy (layers, heads, T, S)


class Batcher:
    """One model's queue and worker threads (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_tokens: int = 4096,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        workers: int = 1,
        batch_wait: str = "adaptive",
        on_batch: Callable[[int, int, int, float], None] | None = None,
        name: str = "model",
    ):
        for option, value, low in (
            ("--max_batch_tokens", max_batch_tokens, 1),
            ("--max_queue", max_queue, 1),
            ("--workers", workers, 1),
        ):
            if value < low:
                raise ValueError(f"{option} must be >= {low}, got {value}")
        if max_wait_ms < 0:
            raise ValueError(f"--max_wait_ms must be >= 0, got {max_wait_ms}")
        if batch_wait not in BATCH_WAIT_CHOICES:
            raise ValueError(
                f"--batch_wait must be one of {', '.join(BATCH_WAIT_CHOICES)}, got {batch_wait!r}"
            )
        self.batch_wait = batch_wait
        self.engine, self.name = engine, name
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000
        self.max_queue = max_queue
        # per engine call: (segments, padded source tokens, generated tokens, seconds)
        self.on_batch = on_batch
        self._queue: list[_Segment] = []
        self._last_arrival = float(
            "-inf"
        )  # of the previous request: requests closer than max_wait wait for company
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batcher-{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------------------------------ event loop
    @property
    def depth(self) -> int:
        """Segments waiting (not yet in an engine call)."""
        return len(self._queue)

    def submit(
        self,
        sources: Sequence[list[int] | None],
        options: SearchOptions,
        attention: bool = False,
        texts: Sequence[str] | None = None,
    ) -> tuple[asyncio.Future, _Request]:
        """Queue one request's segments (``None``: an empty segment, answered here; ``texts``: the segments as sent,
        for alignments). Returns the future of its ``list[SegmentOutput]`` and a handle for :meth:`cancel`. Raises
        :class:`QueueFull` without waiting."""
        loop = asyncio.get_running_loop()
        request = _Request(loop, loop.create_future(), [None] * len(sources), len(sources), attention)
        n_best = options.n_best
        empty = SegmentOutput(
            Translation(
                [""] * n_best,
                [0.0] * n_best if options.return_scores else None,
                [[]] * n_best,
                [np.zeros((0, 0))] * n_best if options.return_alignment else None,
            )
        )
        now = time.monotonic()
        with self._cond:
            # "adaptive": wait for company only when requests are arriving closer together than max_wait; a lone
            # request on an idle server goes at once (waiting would only add max_wait to its latency)
            likely = self.batch_wait == "always" or now - self._last_arrival <= self.max_wait
            wait = self.max_wait if likely else 0.0
            self._last_arrival = now
            work = [
                _Segment(ids, options, request, i, now, wait, None if texts is None else texts[i].strip())
                for i, ids in enumerate(sources)
                if ids
            ]
            if self._closing:
                raise QueueFull("the server is shutting down")
            if len(self._queue) + len(work) > self.max_queue:
                raise QueueFull(
                    f"the queue of model {self.name!r} is full ({len(self._queue)} of {self.max_queue} segments "
                    "waiting); retry later"
                )
            self._queue.extend(work)
            self._cond.notify()
        for i, ids in enumerate(sources):
            if not ids:
                request.done(i, empty)
        return request.future, request

    def cancel(self, request: _Request) -> int:
        """Drop a request's waiting segments (its client went away); returns how many left the queue."""
        with self._cond:
            request.cancelled = True
            before = len(self._queue)
            self._queue = [s for s in self._queue if s.request is not request]
            return before - len(self._queue)

    def close(self, timeout: float | None = None) -> None:
        """Finish every queued segment, then stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # --------------------------------------------------------------------------------------------- workers
    def _work(self) -> None:
        while True:
            group = self._next_group()
            if group is None:
                return
            self._run(group)

    def _next_group(self) -> list[_Segment] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            # wait for company until the oldest has waited max_wait or the budget is full
            deadline = self._queue[0].queued + self._queue[0].wait
            while not self._closing and self._waiting_tokens() < self.max_batch_tokens:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._queue:  # cancelled while waiting
                return [] if not self._closing else None
            group = self._pick(self._queue)
            taken = {id(s) for s in group}
            self._queue = [s for s in self._queue if id(s) not in taken]
            return group

    def _waiting_tokens(self) -> int:
        return sum(len(s.ids) for s in self._queue)

    def _pick(self, queue: list[_Segment]) -> list[_Segment]:
        """The oldest segment and the same-options segments closest to its length, within the token budget."""
        first = queue[0]
        same = sorted(
            (s for s in queue if s.options == first.options), key=lambda s: abs(len(s.ids) - len(first.ids))
        )
        group: list[_Segment] = []
        longest = 0
        for segment in same:
            width = max(longest, len(segment.ids))
            if group and width * (len(group) + 1) > self.max_batch_tokens:
                continue
            group.append(segment)
            longest = width
        return group

    def _run(self, group: list[_Segment]) -> None:
        if not group:
            return
        options = group[0].options
        start = time.perf_counter()
        try:
            translations = self.engine.translate_ids(
                [s.ids for s in group],
                num_beams=options.num_beams,
                n_best=options.n_best,
                max_new_tokens=options.max_new_tokens,
                return_scores=options.return_scores,
                return_alignment=options.return_alignment,
                texts=[s.text for s in group] if all(s.text is not None for s in group) else None,
            )
        except Exception as error:  # one poisoned batch fails its requests only
            message = (
                f"the engine failed on a batch of {len(group)} segment(s): {type(error).__name__}: {error}"
            )
            failure = EngineError(" ".join(message.split()))
            for segment in {id(s.request): s.request for s in group}.values():
                segment.fail(failure)
            return
        if self.on_batch is not None:
            generated = sum(len(t.token_ids[0]) + 1 for t in translations if t.token_ids)
            padded = max(len(s.ids) for s in group) * len(group)
            self.on_batch(len(group), padded, generated, time.perf_counter() - start)
        for segment, translation in zip(group, translations, strict=True):
            self._deliver(segment, translation)

    def _deliver(self, segment: _Segment, translation: Translation) -> None:
        request = segment.request
        if request.cancelled:
            return
        weights = None
        if request.attention and translation.token_ids:
            try:
                weights = self.engine.cross_attention(segment.ids, translation.token_ids[0])
            except Exception as error:
                request.fail(EngineError(f"cross-attention failed: {type(error).__name__}: {error}"))
                return
        request.done(segment.index, SegmentOutput(translation, weights))
