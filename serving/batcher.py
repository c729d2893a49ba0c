"""An async micro-batcher: concurrent requests share one model call.

Up to `calls` model calls run at once, each in a thread of its own. While they run, new
requests queue; the next free call takes what is queued, never more than `max_batch` images: a
larger request is split into parts of at most `max_batch` images first. A lone client never waits
for company; under concurrent load a batch waits up to `max_wait_s` for more requests, so clients
that were answered together land in the same next batch.

Why more than one call: on CPU a batch of images costs about what the same images cost one call
each (the convolutions' arithmetic dominates, and large batches spill the caches), while one call
alone leaves the cores idle during its serial parts (Python, the conversions, each layer's start);
two calls at once fill those gaps (bench/serving.py, docs/benchmarks.md).

A call that takes longer than `timeout_s` fails its requests with `ModelTimeout`; the batcher
leaves that call's thread behind and goes on in a fresh one, so the requests queued after it
are answered.

At most `max_queued_images` images wait; a request that would queue more is refused at once
(`Overloaded`) rather than waiting behind a queue it cannot get through in time. A request into
an empty queue is always taken, however many images it has.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from serving.model import LoadedModel

log = logging.getLogger(__name__)


class ModelTimeout(Exception):
    """A model call took longer than the batcher's timeout."""


class Overloaded(Exception):
    """The queue holds as many images as it may."""


@dataclass
class _Item:
    model: LoadedModel
    images: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        timeout_s: float,
        max_queued_images: int | None = None,
        on_batch: Callable[[int], None] = lambda size: None,
        calls: int = 1,
    ):
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.max_queued_images = max_queued_images or 4 * self.max_batch
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._queued = asyncio.Event()
        self._executors = [self._new_executor() for _ in range(max(1, calls))]
        self._tasks: list[asyncio.Task] = []
        self._last_batch = 1

    @staticmethod
    def _new_executor() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(call), name=f"micro-batcher-{call}") for call in range(len(self._executors))]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, model: LoadedModel, images: np.ndarray) -> np.ndarray:
        """Probabilities for `images` from `model`, computed in batches with other requests."""
        queued = self.queued_images()
        if queued and queued + len(images) > self.max_queued_images:
            raise Overloaded(f"{queued} images wait for the model already (SERVING_MAX_QUEUED_IMAGES={self.max_queued_images})")
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(images), self.max_batch):
            futures.append(loop.create_future())
            self._queue.append(_Item(model, images[start : start + self.max_batch], futures[-1]))
        self._queued.set()
        try:
            return np.concatenate(await asyncio.gather(*futures))
        finally:
            for future in futures:  # the client went away or a part failed: drop the other parts
                future.cancel()

    def queued_images(self) -> int:
        return _count(self._queue)

    async def _run(self, call: int) -> None:
        """One of the `calls` loops: take the next batch, run it in this loop's own thread."""
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            self._last_batch = sum(len(item.images) for item in items)
            for group in _by_model(items):
                try:
                    running = loop.run_in_executor(self._executors[call], _predict, group)
                    probabilities = await asyncio.wait_for(running, self.timeout_s or None)
                except Exception as error:  # every waiting request learns why
                    if isinstance(error, TimeoutError):
                        error = self._abandon_call(call, _count(group))
                    for item in group:
                        if not item.future.done():
                            item.future.set_exception(error)
                    continue
                self._on_batch(len(probabilities))
                start = 0
                for item in group:
                    end = start + len(item.images)
                    if not item.future.done():  # done: the client went away
                        item.future.set_result(probabilities[start:end])
                    start = end

    def _abandon_call(self, call: int, images: int) -> ModelTimeout:
        """Leave the hung call's thread to finish on its own; this loop's later calls run in a fresh one."""
        log.error("a model call of %d image(s) took longer than %g s; continuing in a new thread", images, self.timeout_s)
        self._executors[call].shutdown(wait=False)
        self._executors[call] = self._new_executor()
        return ModelTimeout(f"the model did not answer within SERVING_PREDICT_TIMEOUT_S={self.timeout_s:g} s")

    async def _collect(self) -> list[_Item]:
        """The next batch: the oldest queued part and what fits after it, up to `max_batch` images."""
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            if self._last_batch > 1 and _count(self._queue) < self.max_batch:
                await asyncio.sleep(self.max_wait_s)
                if not self._queue:  # another call took it meanwhile
                    continue
            items = [self._queue.popleft()]
            while self._queue and _count(items) + len(self._queue[0].images) <= self.max_batch:
                items.append(self._queue.popleft())
            waiting = [item for item in items if not item.future.done()]  # done: the client went away
            if waiting:
                return waiting


def _count(items) -> int:
    return sum(len(item.images) for item in items)


def _by_model(items: list[_Item]) -> list[list[_Item]]:
    """Split a batch by model: during a swap, requests that started on the old model finish on it."""
    groups: dict[int, list[_Item]] = {}
    for item in items:
        groups.setdefault(id(item.model), []).append(item)
    return list(groups.values())


def _predict(group: list[_Item]) -> np.ndarray:
    images = group[0].images if len(group) == 1 else np.concatenate([item.images for item in group])
    return group[0].model.predict(images)
