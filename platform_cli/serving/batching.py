"""Adaptive micro-batching: concurrent requests answered by one model call.

    batcher = MicroBatcher(process, max_batch=64, max_wait_s=0.002, in_flight=lambda: server_requests)
    result = await batcher.submit(rows)      # in a request handler, on the server's event loop

`process(requests)` gets the rows of every request in the batch (a list of row lists) and returns
one result per request, in order: a value, or an exception for that request alone (its 400, or
the model error of the call it was in). It runs on the event loop, so while it runs new
requests queue up and form the next batch: the busier the server, the larger the batches.

When a batch closes:
- at once, when its requests hold max_batch rows (a single larger request is a batch alone);
- otherwise on the event loop's next turn, so requests that arrived together go together,
  unless the server has requests that are on their way to the batcher (received, not yet
  submitted: `in_flight()` exceeds the queue). Only then does the batch wait for them, and
  never longer than max_wait_s after its first request.
So a lone client never waits, and a batch never idles for requests that are not coming: with
closed-loop clients every waiting client is already in the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class MicroBatcher:
    def __init__(self, process: Callable[[list[list[Any]]], list[Any]], max_batch: int, max_wait_s: float,
                 in_flight: Callable[[], int] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.process = process
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.in_flight = in_flight or (lambda: 0)
        # (a request's rows, its future, its number of rows: counted once, as len() of a v2
        # request's Columns is a Python call)
        self._queue: list[tuple[Any, asyncio.Future, int]] = []
        self._rows = 0
        self._first_at = 0.0
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self.batches = 0  # calls of process(), for tests and the log

    async def submit(self, rows: list[Any]) -> Any:
        """The result for these rows (raises the exception process() gave for them)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue:
            self._first_at = time.perf_counter()
        count = len(rows)
        self._queue.append((rows, future, count))
        self._rows += count
        if self._rows >= self.max_batch:
            self._cancel()
            self._run()
        else:
            self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._cancel()
        waiting_for = self.in_flight() - len(self._queue)
        left = self.max_wait_s - (time.perf_counter() - self._first_at)
        if waiting_for > 0 and left > 0:
            self._scheduled = loop.call_later(left, self._run)
        else:
            self._scheduled = loop.call_soon(self._run)

    def _cancel(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

    def _run(self) -> None:
        self._scheduled = None
        while self._queue:
            batch, rows = [], 0
            while self._queue and (not batch or rows + self._queue[0][2] <= self.max_batch):
                request = self._queue.pop(0)
                batch.append(request)
                rows += request[2]
            self._rows -= rows
            self._first_at = time.perf_counter()
            self._answer(batch)
            if self._rows < self.max_batch and self._queue:
                self._schedule(asyncio.get_running_loop())  # a remainder: gather more on the next turn
                return

    def _answer(self, batch: list[tuple[Any, asyncio.Future, int]]) -> None:
        self.batches += 1
        try:
            results = self.process([rows for rows, _, _ in batch])
        except Exception as error:  # process() is meant to sort errors per request; if it cannot, all fail
            results = [error] * len(batch)
        for (_, future, _), result in zip(batch, results):
            if future.done():  # the client went away
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
