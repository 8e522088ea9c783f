"""``kill -USR1 <worker pid>``: the stack dump an operator takes of a stuck worker.

mode's worker writes every thread's stack to the worker's log on SIGUSR1, with the
asyncio tasks of each thread that has a loop. Faust's consumer thread, whose
fetcher and metadata tasks are the first thing to look at when counting stops
(session 15: a metadata task dead, the fetcher on a dead leader), had none until
``services.aggregator.bulk`` gave it its loop.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import Callable

import pytest

from tests.integration.conftest import Worker, wait_until

pytestmark = pytest.mark.integration


def _thread_blocks(log: str) -> dict[str, str]:
    """The dump's sections by thread name (the last dump's, if several)."""
    blocks: dict[str, str] = {}
    for part in log.split("\nTHREAD ")[1:]:
        name, _, body = part.partition("\n")
        blocks[name.strip()] = body
    return blocks


def test_sigusr1_dumps_the_consumer_threads_tasks_and_the_worker_goes_on(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    os.kill(worker.process.pid, signal.SIGUSR1)

    def consumer_thread_tasks() -> str | None:
        """The consumer thread's TASKS part, once the dump has written it whole: the
        consumer's fetcher and its client's metadata task, with their stacks."""
        for body in _thread_blocks(worker.log_path.read_text(errors="replace")).values():
            if "_GatheringConsumerThread" not in body:
                continue
            tasks = body.partition("\nTASKS\n")[2]
            if "Fetcher._fetch_requests_routine" in tasks and "_md_synchronizer" in tasks:
                return tasks
        return None

    wait_until(
        consumer_thread_tasks, 20, "the consumer thread's fetcher and metadata tasks in the dump"
    )
    tasks = consumer_thread_tasks()
    assert tasks is not None and "Stack for <Task" in tasks
    # The main loop's tasks are there too, as before.
    main = _thread_blocks(worker.log_path.read_text(errors="replace"))["MainThread"]
    assert "\nTASKS\n" in main
    # A dump is not a stop: the worker still answers.
    assert worker.process.poll() is None
    with urllib.request.urlopen(worker.url + "/readyz", timeout=5) as resp:
        assert resp.status == 200


def test_sigusr2_opens_no_debugger_the_worker_says_so_and_goes_on(
    start_worker: Callable[..., Worker],
) -> None:
    """mode opens pdb on SIGUSR2, on the worker's own loop: the worker would stop
    counting until someone typed at its stdin. It logs a warning instead."""
    worker = start_worker()
    os.kill(worker.process.pid, signal.SIGUSR2)
    wait_until(
        lambda: "SIGUSR2 ignored" in worker.log_path.read_text(errors="replace"),
        20,
        "the worker's warning for SIGUSR2",
    )
    assert "Starting debugger" not in worker.log_path.read_text(errors="replace")
    assert worker.process.poll() is None
    with urllib.request.urlopen(worker.url + "/readyz", timeout=5) as resp:
        assert resp.status == 200
