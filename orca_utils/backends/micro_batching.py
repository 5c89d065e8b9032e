"""How the local OpenAI-compatible server (`local_server`) sends requests to a backend: `run_batch`, one
`complete_batch` call for many requests (or `complete` per request when the backend has no `complete_batch`), and
`MicroBatcher`, which collects concurrent chat requests for one backend for `window_s` (up to `max_size`) and
answers them with one `run_batch` call."""
from __future__ import annotations

import asyncio
import time

from .base import Completion

__all__ = ["run_batch", "MicroBatcher"]


def run_batch(backend, requests: list[dict]) -> list[Completion | Exception]:
    """One backend call for many requests; per-request exceptions when the backend only has `complete`."""
    if hasattr(backend, "complete_batch"):
        try:
            return list(backend.complete_batch(requests))
        except Exception as exc:  # noqa: BLE001 - reported per request
            return [exc] * len(requests)
    out: list[Completion | Exception] = []
    for r in requests:
        try:
            out.append(backend.complete(r["messages"], r["max_tokens"], r["temperature"], r["stop"]))
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


class MicroBatcher:
    """Collects concurrent chat requests for one backend and answers them with one `complete_batch` call."""

    def __init__(self, backend, window_s: float, max_size: int):
        self.backend, self.window_s, self.max_size = backend, window_s, max_size
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def submit(self, request: dict) -> Completion:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._loop())
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((request, fut))
        result = await fut
        if isinstance(result, Exception):
            raise result
        return result

    async def _loop(self) -> None:
        while True:
            items = [await self.queue.get()]
            deadline = time.monotonic() + self.window_s
            while len(items) < self.max_size and (left := deadline - time.monotonic()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            results = await asyncio.to_thread(run_batch, self.backend, [r for r, _ in items])
            for (_, fut), res in zip(items, results):
                if not fut.done():
                    fut.set_result(res)
