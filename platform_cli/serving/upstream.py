"""A minimal HTTP/1.1 client for the router: pooled keep-alive connections, one POST at a time each.

The router forwards every request to a model server on this machine; a general-purpose client
(aiohttp, httpx) costs ~0.2-0.3 ms of Python per request on top of the forward itself, which is
most of the router's overhead. This one writes the request in one syscall and parses the answer
with httptools (the parser uvicorn uses), and keeps idle connections per upstream for reuse.
Only what the router needs: POST with a body, Content-Length answers or chunked answers.
"""

from __future__ import annotations

import asyncio
import socket

import httptools


class UpstreamError(Exception):
    """The upstream did not answer (refused, closed, timed out, malformed)."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future | None = None
        self.body: list[bytes] = []
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(UpstreamError(f"malformed answer: {e}"))
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(UpstreamError(f"connection closed{f': {exc}' if exc else ''}"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), b"".join(self.body), self.parser.should_keep_alive()))

    def _fail(self, error: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(error)

    def send(self, head: bytes, body: bytes, timeout: float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self.body = []
        self.parser = httptools.HttpResponseParser(self)
        self.answer = loop.create_future()
        # A timer handle rather than asyncio.wait_for, which costs a task per request.
        timer = loop.call_later(timeout, self._fail, UpstreamError(f"no answer within {timeout:.0f} s"))
        self.answer.add_done_callback(lambda _: timer.cancel())
        self.transport.write(head + body)
        return self.answer


class Pool:
    """Keep-alive connections to any number of host:port upstreams."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(self, host: str, port: int, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of POST path; UpstreamError if the upstream did not answer."""
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        idle = self._idle.setdefault((host, port), [])
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            try:
                return await self._exchange(connection, idle, head, body)
            except UpstreamError:
                if not connection.closed:
                    raise  # a timeout or a malformed answer: not a stale connection
                # The server closed this idle connection as we reused it: try a fresh one.
        try:
            _, connection = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(_Connection, host, port), self.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise UpstreamError(f"cannot connect to {host}:{port}: {e}") from None
        return await self._exchange(connection, idle, head, body)

    async def _exchange(self, connection: _Connection, idle: list, head: bytes, body: bytes) -> tuple[int, bytes]:
        try:
            status, payload, keep_alive = await connection.send(head, body, self.timeout)
        except UpstreamError:
            connection.transport.close()
            raise
        if keep_alive and not connection.closed:
            idle.append(connection)
        else:
            connection.transport.close()
        return status, payload

    def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.transport.close()
        self._idle.clear()
