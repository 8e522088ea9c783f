"""bench.feeds' keep-alive poster reconnects when the server closed an idle connection."""

from __future__ import annotations

import asyncio

from bench.feeds import RawHttp


async def _server_closing_after_each_response() -> tuple[asyncio.Server, list[int]]:
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()  # as uvicorn does once its keep-alive timeout has passed

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections


def test_a_post_after_the_server_closed_the_idle_connection_opens_a_new_one() -> None:
    async def run() -> tuple[list[tuple[int, bytes]], int]:
        server, connections = await _server_closing_after_each_response()
        port = server.sockets[0].getsockname()[1]
        http = RawHttp("127.0.0.1", port)
        try:
            got = [await http.post("/x", b"one")]
            await asyncio.sleep(0.2)  # idle: the server's FIN arrives meanwhile
            got.append(await http.post("/x", b"two"))
        finally:
            await http.close()
            server.close()
            await server.wait_closed()
        return got, len(connections)

    got, opened = asyncio.run(run())
    assert got == [(202, b"one"), (202, b"two")]
    assert opened == 2
