"""A mend for aiokafka 0.14 under uvloop: a write on a closed connection is a
connection error, not a crash of the task that wrote.

``AIOKafkaConnection.send`` turns an ``OSError`` from its writer into
``KafkaConnectionError``, which every caller retries. uvloop does not raise
``OSError`` there: once it has closed a transport (a broker that died resets the
socket), ``write`` raises ``RuntimeError("unable to perform operation on
<TCPTransport closed=True ...>; the handler is closed")`` (aio-libs/aiokafka#1038,
open). Until aiokafka's own reader notices the close, the connection still looks
connected, so a request sent in that moment escapes every ``except KafkaError``.

Seen in session 15 (``tests/integration/test_cluster_faults.py``, a node
SIGKILLed): the aggregator's consumer client sent its metadata request on the
dead node's connection in that moment, and the RuntimeError ended its
metadata task (``AIOKafkaClient._md_synchronizer``) for good. The consumer kept
fetching from the dead leader, its coordinator lookup waited for a metadata
update that never came, and counting stopped for every partition that node had
led, with no error after the first. The services run their clients on uvloop
(Faust's worker and its consumer thread, uvicorn), so all of them are exposed.

:func:`install` wraps the two methods that write (``send`` and
``_send_sasl_token``): a ``RuntimeError`` raised while the transport is closing
closes the connection, as the ``OSError`` path does, and becomes
``KafkaConnectionError``. Any other ``RuntimeError`` is raised unchanged.
``services.common.kafka`` installs it on import, so every process that builds a
client has it; it is idempotent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aiokafka import conn as aiokafka_conn
from aiokafka.errors import KafkaConnectionError

_MENDED = "_borderwatch_mended"
#: The methods as aiokafka defines them (a test shows the defect is still there).
ORIGINALS: dict[str, Callable[..., Any]] = {}


def _mend(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def mended(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return write(self, *args, **kwargs)
        except RuntimeError as err:
            writer = self._writer
            if writer is None or not writer.transport.is_closing():
                raise
            self.close(reason=aiokafka_conn.CloseReason.CONNECTION_BROKEN, exc=err)
            raise KafkaConnectionError(
                f"Connection at {self._host}:{self._port} broken: {err}"
            ) from err

    setattr(mended, _MENDED, True)
    return mended


def install() -> None:
    """Wrap ``AIOKafkaConnection``'s writing methods (idempotent)."""
    cls = aiokafka_conn.AIOKafkaConnection
    for name in ("send", "_send_sasl_token"):
        method = getattr(cls, name)
        if getattr(method, _MENDED, False):
            continue
        ORIGINALS[name] = method
        setattr(cls, name, _mend(method))
