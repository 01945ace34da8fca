"""The HTTP door's listening socket: connections accepted from it write without Nagle's delay."""

from __future__ import annotations

import asyncio
import socket

from gateway.http.server import _listen


async def test_accepted_connections_have_nagle_off():
    sock = _listen("127.0.0.1", 0)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("socket")
        seen.set_result(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        # A response is written as headers then body; with Nagle on, the body would wait for the
        # client's delayed ACK (40 ms on Linux). asyncio turns it off only for sockets that say TCP.
        assert await asyncio.wait_for(seen, 5) == 1
        writer.close()
