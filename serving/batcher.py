"""An async micro-batcher: concurrent requests share one model call.

Model calls run one at a time in a dedicated thread. While one runs, new requests queue;
the next call takes everything queued (up to `max_batch` images). A lone client never
waits for company; under concurrent load a batch waits up to `max_wait_s` for more
requests, so clients that were answered together land in the same next batch.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from serving.model import LoadedModel


@dataclass
class _Item:
    model: LoadedModel
    images: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, max_batch: int, max_wait_s: float, on_batch: Callable[[int], None] = lambda size: None):
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task | None = None
        self._last_batch = 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, model: LoadedModel, images: np.ndarray) -> np.ndarray:
        """Probabilities for `images` from `model`, computed in a batch with other requests."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(model, images, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            self._last_batch = sum(len(item.images) for item in items)
            for group in _by_model(items):
                try:
                    probabilities = await loop.run_in_executor(self._executor, _predict, group)
                except Exception as error:  # the model call failed: every waiting request learns why
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

    async def _collect(self) -> list[_Item]:
        items = [await self._queue.get()]
        count = len(items[0].images)
        if self._last_batch > 1 and self._queue.qsize() < self.max_batch - count:
            await asyncio.sleep(self.max_wait_s)
        while count < self.max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            items.append(item)
            count += len(item.images)
        return items


def _by_model(items: list[_Item]) -> list[list[_Item]]:
    """Split a batch by model: during a swap, requests that started on the old model finish on it."""
    groups: dict[int, list[_Item]] = {}
    for item in items:
        groups.setdefault(id(item.model), []).append(item)
    return list(groups.values())


def _predict(group: list[_Item]) -> np.ndarray:
    images = group[0].images if len(group) == 1 else np.concatenate([item.images for item in group])
    return group[0].model.predict(images)
