"""uvicorn's HTTP protocol with each response sent in one write.

uvicorn writes a response's head and its body with two ``transport.write`` calls, and each is
a ``send`` system call while the process holds the GIL. Behind Seldon's orchestrator the second
was measured at as much CPU as the first, near a quarter of the server's time per feedback.
Here writes made during one turn of the event loop are joined and sent together at its end, so
a response (head and body are written in the same turn) goes out in one call.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes within one loop turn leave in one ``write`` of ``transport``."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def get_extra_info(self, name, default=None):
        # uvicorn asks for the socket only to read its two addresses, which the transport holds
        # already. uvloop builds that socket object at ~10 us a connection, and Seldon's
        # orchestrator opens a connection for most calls it makes (all but two of them, at 16 in
        # flight): then uvicorn reads "peername" and "sockname" instead, ~1 us.
        if name == "socket":
            return default
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name):  # everything else is the transport's own
        return getattr(self._transport, name)


class CoalescingHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))
