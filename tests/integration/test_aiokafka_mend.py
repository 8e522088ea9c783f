"""services/common/aiokafka_mend.py on a real broker, under uvloop as the services run.

A connection whose transport uvloop has closed, before aiokafka's reader noticed:
what a broker's death looks like for the moment between its reset and aiokafka's
reader waking up. The request written then must be a ``KafkaConnectionError`` (which
aiokafka's callers retry on another node), and the connection must be closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import uvloop
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from services.common import aiokafka_mend
from services.common import kafka as _kafka  # noqa: F401  (installs the mend)

pytestmark = pytest.mark.integration


def _run(coro: Callable[[], Any]) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro())


def _host_port(bootstrap: str) -> tuple[str, int]:
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    return host, int(port)


def _lose_as_a_reset(conn: AIOKafkaConnection) -> None:
    """Drop ``conn`` as a broker's death does: uvloop closes the transport and tells the
    protocol the connection was lost with an error (a reset), so aiokafka's reader holds
    an exception, not EOF, and ``connected()`` stays true until its read task runs.
    ``abort()`` alone would report a clean EOF, which aiokafka sees at once."""
    protocol = conn._protocol
    lost = protocol.connection_lost
    protocol.connection_lost = lambda exc: lost(
        exc or ConnectionResetError(104, "Connection reset by peer")
    )
    conn._writer.transport.abort()


async def _write_in_the_gap(
    conn: AIOKafkaConnection, send: Callable[..., Any]
) -> BaseException | None:
    """Close ``conn``'s transport and write on it between uvloop's close and aiokafka's
    reader noticing: uvloop closes the handle in a callback that also wakes the reader,
    so a callback queued right behind it runs first (as the aggregator's metadata task
    did). Returns what the write raised."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[BaseException | None] = loop.create_future()
    seen: dict[str, bool] = {}

    def write() -> None:
        seen["closing"] = conn._writer.transport.is_closing()
        seen["connected"] = conn.connected()
        try:
            pending = send(conn, MetadataRequest([]))
        except BaseException as exc:  # what it raised is the result
            done.set_result(exc)
        else:
            pending.close()  # a coroutine that would wait for an answer
            done.set_result(None)

    _lose_as_a_reset(conn)
    loop.call_soon(write)
    raised = await asyncio.wait_for(done, 30)
    assert seen == {"closing": True, "connected": True}, f"not the gap: {seen}"
    return raised


def test_the_mend_is_installed_once() -> None:
    aiokafka_mend.install()
    send = AIOKafkaConnection.send
    assert getattr(send, "_borderwatch_mended", False)
    aiokafka_mend.install()
    assert AIOKafkaConnection.send is send
    assert aiokafka_mend.ORIGINALS["send"] is send.__wrapped__


def test_aiokafka_alone_raises_runtimeerror_on_a_transport_uvloop_closed(kafka: str) -> None:
    """The defect the mend is for (aio-libs/aiokafka#1038). When this fails, aiokafka
    handles it itself and the mend can go."""

    async def main() -> None:
        conn = await create_conn(*_host_port(kafka))
        try:
            raised = await _write_in_the_gap(conn, aiokafka_mend.ORIGINALS["send"])
            assert isinstance(raised, RuntimeError) and "closed" in str(raised), raised
        finally:
            conn.close()

    _run(main)


def test_a_write_on_a_transport_uvloop_closed_is_a_connection_error(kafka: str) -> None:
    async def main() -> None:
        conn = await create_conn(*_host_port(kafka))
        raised = await _write_in_the_gap(conn, AIOKafkaConnection.send)
        assert isinstance(raised, KafkaConnectionError) and "broken" in str(raised), raised
        assert not conn.connected()

    _run(main)


def test_a_client_whose_connection_broke_that_way_still_updates_its_metadata(
    kafka: str,
) -> None:
    """What stopped the aggregator's counting: the metadata task must survive the
    error and the next update must reach the broker on a new connection."""

    async def main() -> None:
        client = AIOKafkaClient(bootstrap_servers=kafka, retry_backoff_ms=10)
        await client.bootstrap()
        try:
            node = next(iter(client.cluster.brokers())).nodeId
            conn = await client._get_conn(node)
            assert conn is not None
            # The metadata task is woken first, then uvloop's close is queued: the task
            # writes after the close and before aiokafka's reader has seen it.
            update = client.force_metadata_update()
            _lose_as_a_reset(conn)
            # Bounded, not a timing: a dead metadata task would leave it waiting forever.
            # This update fails (the broken connection was the only one); it must end.
            await asyncio.wait_for(update, 30)
            assert not conn.connected()
            assert not client._sync_task.done()
            assert await asyncio.wait_for(client.force_metadata_update(), 30) is True
        finally:
            await client.close()

    _run(main)
