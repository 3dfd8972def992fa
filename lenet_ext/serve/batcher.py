"""Dynamic batching: the prepared digits of concurrent requests gathered into one fused inference
call, on one inference thread."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional

import numpy as np

from .metrics import Metrics
from .model import Model


class Batcher:
    """Gathers the prepared digits of concurrent requests into one fused inference call. A batch
    starts with the first digit waiting; it takes every digit already queued and, while other
    requests are still being decoded, waits up to max_wait for them, up to max_batch digits."""

    def __init__(self, model: Model, metrics: Metrics, max_batch: int, max_wait_s: float):
        self.model, self.metrics = model, metrics
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: asyncio.Queue = asyncio.Queue()  # bound to the server's loop at its first use
        self.decoding = 0  # requests whose image is being decoded: digits that will come soon
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lenet-inference")
        self.task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Answers what is queued, then stops."""
        if self.task is not None:
            await self.queue.put(None)
            await self.task
        self.executor.shutdown(wait=True)

    async def submit(self, digit: np.ndarray, details: bool) -> Dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((digit, details, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            batch = [first]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    item = self.queue.get_nowait()
                elif self.decoding > 0 and loop.time() < deadline:
                    try:
                        item = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                    except asyncio.TimeoutError:
                        break
                else:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._answer(loop, batch)
        while not self.queue.empty():  # anything queued behind the stop
            item = self.queue.get_nowait()
            if item is not None:
                await self._answer(loop, [item])

    async def _answer(self, loop, batch) -> None:
        digits, details, futures = zip(*batch)
        try:
            answers = await loop.run_in_executor(self.executor, self.model.answer_batch, list(digits), list(details))
        except Exception as exc:  # a bug: every request of the batch gets the error, the server goes on
            answers = [exc] * len(batch)
        self.metrics.batch(len(batch))
        for future, answer in zip(futures, answers):
            if not future.done():
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
