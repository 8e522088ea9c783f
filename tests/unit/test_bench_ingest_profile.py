"""bench.ingest_profile's sorting of py-spy stacks into parts (stacks as py-spy
0.4 writes them with --native --full-filenames --nolineno)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from bench.ingest_profile import LOOP, OTHER, SYSCALL, part_of, read_raw

# The paths py-spy would print on this machine: site-packages, the standard library
# and this checkout.
SP = sysconfig.get_paths()["purelib"]
STD = sysconfig.get_paths()["stdlib"]
REPO = str(Path(__file__).resolve().parents[2])
ROOT = [
    "_run_module_as_main (<frozen runpy>)",
    f"<module> ({SP}/uvicorn/__main__.py)",
    f"Server.run ({SP}/uvicorn/server.py)",
    f"Runner.run ({STD}/asyncio/runners.py)",
    "run_until_complete (/project/uvloop/loop.c)",
    "run_forever (/project/uvloop/loop.c)",
    "uv_run (/project/build/libuv-x86_64/src/unix/core.c)",
]
DOOR = [
    f"RequestResponseCycle.run_asgi ({SP}/uvicorn/protocols/http/httptools_impl.py)",
    f"IngestApp.__call__ ({REPO}/services/ingest/fastpath.py)",
    f"FieldEventsDoor._respond ({REPO}/services/ingest/fastpath.py)",
    f"field_events ({REPO}/services/ingest/routes.py)",
]
SEND = [
    f"Sender._send_produce_req ({SP}/aiokafka/producer/sender.py)",
    f"AIOKafkaConnection.send ({SP}/aiokafka/conn.py)",
    f"StreamWriter.write ({STD}/asyncio/streams.py)",
    "UVStream_write (/project/uvloop/loop.c)",
    "UVStream__try_write (/project/uvloop/loop.c)",
]


@pytest.mark.parametrize(
    ("inner", "part"),
    [
        # pydantic's frames are passed over: validating is validation's, dumping
        # a record's events is the encoding's.
        (
            [
                *DOOR,
                f"check_events ({REPO}/services/ingest/validation.py)",
                f"TypeAdapter.validate_json ({SP}/pydantic/type_adapter.py)",
                "validate_json (/project/src/validators/mod.rs)",
            ],
            "ingest: validation (pydantic-core's included)",
        ),
        (
            [
                *DOOR,
                f"section_records ({REPO}/services/ingest/producer.py)",
                f"_encode ({REPO}/services/ingest/producer.py)",
                f"TypeAdapter.dump_json ({SP}/pydantic/type_adapter.py)",
            ],
            "ingest: record encoding",
        ),
        (
            [*DOOR, f"KafkaGate.publish ({REPO}/services/ingest/producer.py)"],
            "ingest: publish and ack wait",
        ),
        (
            [
                *DOOR,
                f"KafkaGate.publish ({REPO}/services/ingest/producer.py)",
                f"AIOKafkaProducer.send ({SP}/aiokafka/producer/producer.py)",
                f"MessageAccumulator.add_message ({SP}/aiokafka/producer/message_accumulator.py)",
            ],
            "aiokafka: accumulator, record batches",
        ),
        (
            [*DOOR, f"Histogram.observe ({SP}/prometheus_client/metrics.py)"],
            "prometheus_client: metrics",
        ),
        (
            [*DOOR, f"Event.set ({STD}/asyncio/locks.py)"],
            "ingest: door, admission, dedupe, the answer",
        ),
        (
            [f"HttpToolsProtocol.data_received ({SP}/uvicorn/protocols/http/httptools_impl.py)"],
            "uvicorn: HTTP protocol (httptools), ASGI cycle",
        ),
        (
            [*SEND[:2], f"Struct.encode ({SP}/aiokafka/protocol/struct.py)"],
            "aiokafka: sender loop, produce requests and responses",
        ),
        # A socket write, wherever it is made, and epoll: time in the kernel or
        # waiting for a CPU, set apart.
        ([*SEND, "write (/usr/lib/x86_64-linux-gnu/libc.so.6)"], SYSCALL + ": write"),
        (
            ["uv__io_poll (linux.c)", "epoll_pwait (/usr/lib/x86_64-linux-gnu/libc.so.6)"],
            SYSCALL + ": epoll_pwait",
        ),
        # Only C code under the loop: the loop's own.
        (["Handle__run (/project/uvloop/loop.c)", "task_step (_asynciomodule.c)"], LOOP),
        ([], LOOP),
    ],
)
def test_a_sample_goes_to_the_part_of_its_innermost_known_frame(
    inner: list[str], part: str
) -> None:
    assert part_of(ROOT + inner) == part


def test_a_thread_outside_the_loop_is_other() -> None:
    stack = [f"Thread._bootstrap ({STD}/threading.py)", f"Thread.run ({STD}/threading.py)"]
    assert part_of(stack) == OTHER


def test_read_raw_counts_samples_per_part(tmp_path: Path) -> None:
    raw = tmp_path / "ingest.raw"
    door = ";".join(["thread (8905): MainThread", *ROOT, *DOOR])
    write = ";".join([*ROOT, *SEND, "write (/usr/lib/x86_64-linux-gnu/libc.so.6)"])
    raw.write_text(f"{door} 7\n{write} 3\n{door} 2\n")
    assert read_raw(raw) == {
        "ingest: door, admission, dedupe, the answer": 9,
        SYSCALL + ": write": 3,
    }
