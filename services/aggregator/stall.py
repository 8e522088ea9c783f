"""What a worker stuck in a rebalance is waiting for, in one log record.

A worker whose table recovery does not finish prints only Faust's "No event
received for active tp ..." every 5 s, which says that nothing arrives but not
why. :func:`describe` reads, without changing anything, the state that decides
whether a partition is fetched and delivered: Faust's view (paused and active
partitions, read offsets, flow control, the changelog queue, Recovery's offsets
and highwaters), the aiokafka consumer's per-partition state and fetcher (records
waiting to be consumed, nodes with a request in flight, pending tasks), and where
every task of both event loops is suspended.

The aiokafka consumer lives on Faust's consumer thread; its state is read from
the worker's loop without a lock. That is safe for a report (each read is one
attribute or a copied container) and a torn read only makes one line stale.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
from typing import Any


def _frames(task: asyncio.Task[Any], depth: int = 6) -> str:
    try:
        stack = task.get_stack(limit=depth)
    except Exception as exc:  # a task finishing under us
        return f"<stack unavailable: {exc!r}>"
    where = []
    for frame in stack:
        code = frame.f_code
        where.append(
            f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{frame.f_lineno} {code.co_name}"
        )
    return " <- ".join(reversed(where)) or "<not started>"


def _tasks(loop: asyncio.AbstractEventLoop | None) -> list[str]:
    if loop is None:
        return ["<no loop>"]
    for _ in range(3):  # the set may change while another thread's loop runs
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:
            continue
    else:
        return ["<tasks unavailable>"]
    return sorted(f"{t.get_name()}: {_frames(t)}" for t in tasks if not t.done())


def _tp(tp: Any) -> str:
    return f"{tp.topic}[{tp.partition}]"


def _by_tp(values: Any, show: Any = str) -> str:
    """``topic[p]=value, ...`` in partition order, for a mapping keyed by partition."""
    return ", ".join(
        f"{_tp(tp)}={show(v)}" for tp, v in sorted(values.items(), key=lambda i: _tp(i[0]))
    )


def _aiokafka(consumer: Any) -> list[str]:
    lines: list[str] = []
    fetcher = getattr(consumer, "_fetcher", None)
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    assignment = getattr(subscription, "assignment", None)
    if assignment is None:
        lines.append("aiokafka: no assignment")
    else:
        lines.append(f"aiokafka assignment active={assignment.active}:")
        for tp in sorted(assignment.tps, key=_tp):
            state = assignment.state_value(tp)
            lines.append(
                f"  {_tp(tp)} position={state._position} valid={state.has_valid_position} "
                f"awaiting_reset={state.awaiting_reset} paused={state.paused} "
                f"highwater={state.highwater}"
            )
    if fetcher is not None:
        records = dict(fetcher._records)
        shown = _by_tp(records, lambda r: type(r).__name__)
        lines.append(f"aiokafka fetcher: records waiting for {shown or 'none'}")
        lines.append(f"aiokafka fetcher: nodes in flight {sorted(fetcher._in_flight)}")
        pending = list(fetcher._pending_tasks)
        lines.append(f"aiokafka fetcher: {len(pending)} pending tasks")
        for task in pending:
            lines.append(f"  {_frames(task, depth=8)}")
        lines.append(f"aiokafka fetcher: {len(fetcher._fetch_waiters)} fetch waiters")
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None:
        lines.append(
            "aiokafka coordinator: "
            f"generation={getattr(coordinator, 'generation', '?')} "
            f"coordinator_id={getattr(coordinator, 'coordinator_id', '?')} "
            f"rejoin_needed={getattr(coordinator, '_rejoin_needed_fut', None)}"
        )
    return lines


def describe(app: Any) -> str:
    """A multi-line report of what decides whether this worker's partitions are
    fetched, delivered and restored (read only)."""
    lines = [f"threads: {', '.join(sorted(t.name for t in threading.enumerate()))}"]
    try:
        consumer = app.consumer
        changelogs = set(app.tables.changelog_topics)
        lines.append(
            f"faust: generation={app.consumer_generation_id} rebalancing={app.rebalancing} "
            f"flow_active={consumer.flow_active} suspend_flow={consumer.suspend_flow.is_set()} "
            f"flow_control_active={app.flow_control.is_active()}"
        )
        lines.append(f"faust paused: {sorted(map(_tp, consumer._paused_partitions))}")
        lines.append(f"faust active: {sorted(map(_tp, consumer._active_partitions or ()))}")
        lines.append(f"faust buffered: {sorted(map(_tp, consumer._buffered_partitions))}")
        lines.append(f"faust read offsets: {_by_tp(consumer._read_offset)}")
        lines.append(f"faust changelog queue: {app.tables.changelog_queue.qsize()} events")
        recovery = app.tables.recovery
        for title, offsets in (
            ("active offsets", recovery.active_offsets),
            ("active highwaters", recovery.active_highwaters),
        ):
            lines.append(f"recovery {title}: {_by_tp(offsets)}")
        lines.append(
            f"recovery: in_recovery={recovery.in_recovery} completed={recovery.completed.is_set()} "
            f"changelog topics {sorted(changelogs)}"
        )
        thread = consumer._thread
        lines.extend(_aiokafka(thread._consumer))
        lines.append("consumer thread tasks:")
        lines.extend(f"  {t}" for t in _tasks(getattr(thread, "thread_loop", None)))
    except Exception:
        lines.append("report failed:\n" + traceback.format_exc())
    lines.append("worker tasks:")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    lines.extend(f"  {t}" for t in _tasks(loop))
    return "\n".join(lines)
