"""bench.ingest's raw clients send ingest's headers and count what its 202s accepted."""

from __future__ import annotations

import asyncio

import orjson

from bench.ingest import post_all


def test_raw_clients_authenticate_and_count_accepted_events_and_failures() -> None:
    seen: list[dict[bytes, bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():  # keep-alive: many requests a connection
            headers: dict[bytes, bytes] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers[b"content-length"]))
            seen.append(headers)
            if body == b"refused":
                answer, status = b'{"detail": "no"}', b"422 Unprocessable Entity"
            else:
                ids = [orjson.loads(e)["event_id"] for e in body.split(b"\n")]
                answer, status = orjson.dumps({"accepted": ids}), b"202 Accepted"
            writer.write(
                b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(answer), answer)
            )
            await writer.drain()
        writer.close()

    async def run() -> tuple[int, float, list[float], int]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        bodies = [orjson.dumps({"event_id": f"e{i}"}) for i in range(5)]
        bodies.append(b'{"event_id": "a"}\n{"event_id": "b"}')
        bodies.append(b"refused")
        try:
            return await post_all(f"http://127.0.0.1:{port}", "T0K", bodies, 2, raw=True)
        finally:
            server.close()
            await server.wait_closed()

    accepted, took, latencies, failed = asyncio.run(run())
    assert (accepted, failed, len(latencies)) == (7, 1, 7)
    assert took > 0
    assert len(seen) == 7
    assert {h[b"authorization"] for h in seen} == {b"Bearer T0K"}
    assert {h[b"content-type"] for h in seen} == {b"application/x-ndjson"}
