"""Benchmark: where ingest's CPU per single-event request goes, part by part.

    python -m bench.ingest_profile [--events 8000] [--clients 4] [--rate 250] [--client raw]

Runs ingest as ``python -m bench.ingest --batch 1`` does (a real embedded broker,
uvicorn, authentication on, ``--clients`` keep-alive httpx clients each posting
one event per request; ``--client raw``: ready-made requests on keep-alive
sockets, as ``bench.ingest --client raw``) and records the ingest process with
py-spy (``--native``, pausing it at each sample) during the measured posts.

Each sample goes to one part by its stack, read from the innermost frame
outwards: the first Python frame of a known package decides (asyncio's and the
standard library's frames are passed over, so a future resolved inside
aiokafka's sender counts as the sender's). A sample with no Python frame below
the event loop's ``run_until_complete`` is uvloop's own C code: epoll, socket
reads, calling callbacks.

py-spy counts a thread that is runnable but waiting for a CPU as busy, and on
this 2-core machine ingest waits about as long as it runs: writing to a socket
wakes the reader (the broker, an HTTP client), the kernel runs it on ingest's
CPU, and ingest waits inside ``write()`` until it gets the CPU back. So the
kernel's own figures are the totals: ``/proc/<pid>/task/*/schedstat`` (time on
a CPU, time runnable and waiting) and the process's user and system time. The
samples whose innermost frame is a socket write (the libc call under uvloop's
``UVStream._try_write``) are set apart, as their time is mostly that wait and
the write's own kernel work is in the system time; the user time is split over
the other samples' parts, and the system time is a line of its own.

Prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
import psutil  # type: ignore[import-untyped]

from bench.ingest import broker_and_ingest, make_batches, post_all
from bench.pyspy import PY_SPY, raw_stacks

# (part, path fragments): the first frame, innermost first, whose file holds one
# of the fragments decides. Order matters only where fragments overlap. Frames
# of other packages (pydantic, asyncio, the standard library) are passed over: their
# time is the part's that called them.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("aiokafka: send() into the accumulator", ("aiokafka/producer/producer.py",)),
    (
        "aiokafka: accumulator, record batches",
        ("aiokafka/producer/message_accumulator.py", "aiokafka/record/"),
    ),
    (
        "aiokafka: sender loop, produce requests and responses",
        (
            "aiokafka/producer/sender.py",
            "aiokafka/client.py",
            "aiokafka/conn.py",
            "aiokafka/protocol/",
            "aiokafka/util.py",
        ),
    ),
    ("prometheus_client: metrics", ("prometheus_client/",)),
    ("ingest: validation (pydantic-core's included)", ("services/ingest/validation.py",)),
    (
        "ingest: record encoding",
        ("services/ingest/producer.py:_encode", "services/ingest/producer.py:section_records"),
    ),
    ("ingest: publish and ack wait", ("services/ingest/producer.py",)),
    (
        "ingest: door, admission, dedupe, the answer",
        ("services/", "starlette/", "fastapi/"),
    ),
    ("uvicorn: HTTP protocol (httptools), ASGI cycle", ("uvicorn/",)),
]
LOOP = "event loop: uvloop's and asyncio's C code (callbacks, tasks)"
SYSCALL = "inside a system call"
OTHER = "other"


# libc's system call wrappers: a sample there is kernel time (in the system time)
# or, mostly, the wait for a CPU after the call woke someone or was woken.
SYSCALLS = frozenset(
    "epoll_pwait epoll_wait read write recv recvfrom send sendto sendmsg writev readv".split()
)


def _native(frame: str) -> bool:
    # "function (path)": Python frames name a .py file (or a frozen module).
    return not (frame.endswith(".py)") or "(<frozen" in frame)


def part_of(stack: list[str]) -> str:
    """The part of one sample; ``stack`` is root first, as py-spy writes it."""
    if stack and stack[-1].split(" ", 1)[0] in SYSCALLS and "libc.so" in stack[-1]:
        return SYSCALL + ": " + stack[-1].split(" ", 1)[0]
    # The frames from the interpreter's start to asyncio.run's run_until_complete
    # (uvicorn's own start-up frames among them) are the same in every sample.
    start = 0
    for i, frame in enumerate(stack):
        if frame.startswith(("run ", "Runner.run ")) and "asyncio/runners.py" in frame:
            start = i + 1
    inner = [f for f in stack[start:] if not _native(f)]
    if start and not inner:
        return LOOP
    for frame in reversed(inner):  # innermost first
        for part, fragments in PARTS:
            if any(_matches(frame, f) for f in fragments):
                return part
    return OTHER


def _matches(frame: str, fragment: str) -> bool:
    # A frame reads "function (path)"; "path:function" narrows to one function.
    if ":" in fragment:
        path, func = fragment.split(":", 1)
        return frame.startswith(func + " ") and path in frame
    return fragment in frame


def read_raw(path: Path) -> Counter[str]:
    parts: Counter[str] = Counter()
    for stack, count in raw_stacks(path):
        parts[part_of(stack)] += count
    return parts


def _schedstat(pid: int) -> tuple[int, int]:
    """(ns on a CPU, ns runnable waiting for one) of ``pid``'s threads."""
    on = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "schedstat").read_text().split()
        on += int(fields[0])
        wait += int(fields[1])
    return on, wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=8000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="also write py-spy's raw stacks here")
    parser.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="httpx",
        help="the clients, as in bench.ingest --client",
    )
    args = parser.parse_args()
    raw_clients = args.client == "raw"
    warm_bodies = [orjson.dumps(b[0]) for b in make_batches(2000, 1, seed=99)]
    bodies = [orjson.dumps(b[0]) for b in make_batches(args.events, 1)]
    gc.collect()
    gc.freeze()
    print(
        f"{args.events} single-event requests, {args.clients} keep-alive {args.client} clients; "
        f"py-spy at {args.rate} Hz; {os.cpu_count()} CPUs",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="bw-bench-ingest-profile-") as tmp,
        broker_and_ingest(Path(tmp)) as (_, ingest, url, token),
    ):
        asyncio.run(post_all(url, token, warm_bodies, args.clients, raw=raw_clients))
        raw = Path(tmp) / "ingest.raw"
        spy = subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(ingest.pid),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--full-filenames",
                "--nolineno",
                "--threads",
                "--native",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches
        ps = psutil.Process(ingest.pid)
        cpu0 = ps.cpu_times()
        sched0 = _schedstat(ingest.pid)
        accepted, took, latencies, failed = asyncio.run(
            post_all(url, token, bodies, args.clients, raw=raw_clients)
        )
        cpu1 = ps.cpu_times()
        sched1 = _schedstat(ingest.pid)
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
        if not raw.exists():
            raise SystemExit(
                f"py-spy wrote no profile (exit {spy.returncode}); it needs the right to "
                "ptrace ingest: root, or CAP_SYS_PTRACE"
            )
        if args.keep:
            args.keep.write_bytes(raw.read_bytes())
        parts = read_raw(raw)

    requests = len(latencies)
    per = 1000 / requests
    user = (cpu1.user - cpu0.user) * per
    system = (cpu1.system - cpu0.system) * per
    on_cpu = (sched1[0] - sched0[0]) / 1e9 * per
    waiting = (sched1[1] - sched0[1]) / 1e9 * per
    samples = sum(parts.values())
    sampled = samples / args.rate * per
    calls = {p: n for p, n in parts.items() if p.startswith(SYSCALL)}
    in_calls = sum(calls.values())
    rest = samples - in_calls
    print(
        f"{requests:,} requests in {took:.1f} s ({requests / took:,.0f}/s, {failed} failed, "
        f"{accepted:,} events accepted)\n"
        f"ingest, ms per request: on a CPU {on_cpu:.3f} (user {user:.3f}, system {system:.3f}); "
        f"runnable, waiting for a CPU {waiting:.3f}\n"
        f"py-spy: {samples:,} samples, {sampled:.3f} ms per request; "
        f"{in_calls / samples:.0%} inside a system call ({in_calls / args.rate * per:.3f} ms: "
        "the system time and the wait for a CPU): "
        + ", ".join(
            f"{p.removeprefix(SYSCALL + ': ')} {n / args.rate * per:.3f}"
            for p, n in sorted(calls.items(), key=lambda kv: -kv[1])
        )
    )
    print(f"CPU per request, {user + system:.3f} ms: user time split by the other samples' parts")
    for part, n in parts.most_common():
        if part not in calls:
            print(f"  {part:60s} {n / rest * user:.3f} ms  ({n / rest:5.1%} of user)")
    print(f"  {'system time (socket writes and reads, epoll), measured':60s} {system:.3f} ms")


if __name__ == "__main__":
    main()
