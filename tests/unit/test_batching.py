"""Micro-batching: concurrent requests share one call, each gets its own answer, and nobody waits
for requests that are not coming."""

from __future__ import annotations

import asyncio
import time

import pytest

from platform_cli.serving.batching import MicroBatcher


class Doubler:
    """A batch processor that records its calls: doubles every row, refuses a request holding
    a negative row (that request alone), and fails the whole call on a row equal to 13."""

    def __init__(self):
        self.calls: list[list[list[int]]] = []

    def __call__(self, requests):
        self.calls.append(requests)
        if any(13 in rows for rows in requests):
            raise RuntimeError("the model failed")
        return [ValueError(f"negative row in {rows}") if min(rows) < 0 else [2 * r for r in rows] for rows in requests]


def run(coroutine):
    # A loop of its own, not asyncio.run: that would leave the thread without a current event
    # loop, which later tests (Pulumi's mocks) expect to find.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def test_concurrent_requests_share_one_call_and_each_gets_its_own_rows():
    process = Doubler()

    async def scenario():
        batcher = MicroBatcher(process, max_batch=64, max_wait_s=0.002)
        return await asyncio.gather(*[batcher.submit([i, i + 100]) for i in range(10)])

    assert run(scenario()) == [[2 * i, 2 * (i + 100)] for i in range(10)]
    assert len(process.calls) == 1 and len(process.calls[0]) == 10


def test_batches_hold_at_most_max_batch_rows_and_a_larger_request_goes_alone():
    process = Doubler()

    async def scenario():
        batcher = MicroBatcher(process, max_batch=8, max_wait_s=0.002)
        return await asyncio.gather(*[batcher.submit([1, 2, 3]) for _ in range(7)], batcher.submit(list(range(100, 120))))

    answers = run(scenario())
    assert answers[-1] == [2 * r for r in range(100, 120)] and answers[:7] == [[2, 4, 6]] * 7
    sizes = [[len(rows) for rows in call] for call in process.calls]
    assert sizes == [[3, 3], [3, 3], [3, 3], [3], [20]]


def test_a_refused_request_fails_alone_and_a_failed_call_fails_only_its_requests():
    process = Doubler()

    async def scenario():
        batcher = MicroBatcher(process, max_batch=64, max_wait_s=0.002)
        first = await asyncio.gather(batcher.submit([1]), batcher.submit([-1]), batcher.submit([2]), return_exceptions=True)
        second = await asyncio.gather(batcher.submit([13]), batcher.submit([3]), return_exceptions=True)
        third = await batcher.submit([4])
        return first, second, third

    first, second, third = run(scenario())
    assert first[0] == [2] and first[2] == [4] and isinstance(first[1], ValueError)
    assert all(isinstance(answer, RuntimeError) for answer in second)  # the same call as 13
    assert third == [8]  # the batcher goes on after a failed call


def test_a_lone_request_does_not_wait_for_the_batch_to_fill():
    async def scenario():
        batcher = MicroBatcher(Doubler(), max_batch=64, max_wait_s=1.0)
        started = time.perf_counter()
        await batcher.submit([1])
        return time.perf_counter() - started

    assert run(scenario()) < 0.1


def test_a_batch_waits_for_requests_on_their_way_but_no_longer_than_max_wait():
    process = Doubler()

    async def scenario():
        arriving = {"count": 2}  # the server has received two requests; one is still on its way
        batcher = MicroBatcher(process, max_batch=64, max_wait_s=0.5, in_flight=lambda: arriving["count"])

        async def late():
            await asyncio.sleep(0.05)
            return await batcher.submit([2])

        started = time.perf_counter()
        answers = await asyncio.gather(batcher.submit([1]), late())
        together = time.perf_counter() - started
        arriving["count"] = 2  # now one never comes: the batch leaves after max_wait
        started = time.perf_counter()
        await batcher.submit([3])
        return answers, together, time.perf_counter() - started

    answers, together, alone = run(scenario())
    assert answers == [[2], [4]] and len(process.calls[0]) == 2 and together < 0.4
    assert 0.45 <= alone < 1.5


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Doubler(), max_batch=0, max_wait_s=0.0)
