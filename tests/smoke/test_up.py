"""Smoke: `borderwatch up --demo` as a user runs it, then stopped, leaving nothing behind."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.smoke

REPO = Path(__file__).resolve().parents[2]


def _borderwatch() -> list[str]:
    script = Path(sys.executable).parent / "borderwatch"
    if script.exists():
        return [str(script)]
    found = shutil.which("borderwatch")
    assert found, "the borderwatch console script is not installed (pip install -e .)"
    return [found]


def processes_with(marker: str) -> list[int]:
    """PIDs whose environment carries ``BW_SMOKE_ID=marker`` (children inherit it)."""
    pids = []
    needle = f"BW_SMOKE_ID={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(span: int = 4) -> dict[str, int]:
    """Free ports for up's services, so a test never needs 8080/8081/6066 to be free.

    Each service gets ``span`` free ports in a row (``--workers N`` puts worker i on
    the aggregator port + i), below the kernel's ephemeral range: a port the kernel
    hands out (``bind(0)``, or any outgoing connection) may be taken again before up
    binds it, as a scaled-out run once saw for the aggregator port + 1."""
    from services.runtime.broker import port_is_free

    low, _ = _ephemeral_range()
    floor = 20000 if low > 21000 else 10000
    rng = random.Random()
    ports: dict[str, int] = {}
    taken: set[int] = set()
    for name in ("api", "ingest", "aggregator"):
        for _ in range(1000):
            port = rng.randrange(floor, low - span)
            run = range(port, port + span)
            if not taken.intersection(run) and all(port_is_free(p) for p in run):
                break
        else:
            raise AssertionError(f"no {span} free ports in a row below {low} on 127.0.0.1")
        ports[name] = port
        taken.update(run)
    return ports


class Up:
    """``borderwatch up`` as a user runs it. Its service ports are free ones given as
    flags unless ``ports`` says otherwise (``{}``: the defaults, as a user gets them)."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        ports: dict[str, int] | None = None,
    ) -> None:
        self.marker = uuid.uuid4().hex
        base = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
        env = {**base, **(env or {}), "BW_SMOKE_ID": self.marker}
        self.ports = free_ports() if ports is None else ports
        flags = [f"--{name}-port={port}" for name, port in self.ports.items()]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*_borderwatch(), "up", "--data-dir", str(data_dir), *flags, *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the output of up:\n{self.output}")

    def get(self, url: str, token: str | None) -> Any:
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        t0 = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return time.monotonic() - t0

    def kill_everything(self) -> None:
        for pid in processes_with(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "bw-data"


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    try:
        yield started
    finally:
        for up in started:
            if up.process.poll() is None:
                up.process.kill()
            up.kill_everything()


def _total(sections: list[dict[str, Any]]) -> int:
    return sum(sum(s["counts_24h"].values()) for s in sections)


def test_up_demo_shows_counts_then_stops_cleanly(data_dir: Path, ups: list[Up]) -> None:
    up = Up(data_dir, "--demo")
    ups.append(up)
    api = up.wait_for(r"API\s+(http://127\.0\.0\.1:\d+)/api/v1/sections", 120).group(1)
    token = up.wait_for(r"Authorization: Bearer (bw_\S+)", 5).group(1)
    # The ports asked for, and a dashboard URL that carries the token (one click).
    assert api == f"http://127.0.0.1:{up.ports['api']}"
    assert f"Dashboard      {api}/#token={token}" in up.output
    assert f"POST http://127.0.0.1:{up.ports['ingest']}/v1/field-events" in up.output
    assert f"http://127.0.0.1:{up.ports['aggregator']}/metrics" in up.output
    # Without the token the API refuses: secure by default.
    with pytest.raises(urllib.error.HTTPError) as refused:
        up.get(api + "/api/v1/sections", None)
    assert refused.value.code == 401

    deadline = time.monotonic() + 60
    total = 0
    while time.monotonic() < deadline and total == 0:
        total = _total(up.get(api + "/api/v1/sections", token))
        time.sleep(0.2)
    first_visible = time.monotonic() - up.started
    assert total > 0, f"no demo counts in the API after 60 s\n{up.output}"
    # Every country, within the same minute (the demo backfills 7 days first).
    countries = up.get(api + "/api/v1/countries", token)
    while time.monotonic() < deadline:
        countries = up.get(api + "/api/v1/countries", token)
        if countries and all(sum(c["counts_24h"].values()) > 0 for c in countries):
            break
        time.sleep(0.5)
    assert {c["country"] for c in countries if sum(c["counts_24h"].values())} == {
        "LV",
        "LT",
        "PL",
    }, countries
    print(
        f"\n[figure] borderwatch up --demo -> first demo event visible in the API: {first_visible:.1f}s"
    )
    ready = up.get(api.replace("/api/v1/sections", "") + "/readyz", None)
    assert ready == {"ready": True}
    assert processes_with(up.marker), "children should be running"

    took = up.stop(signal.SIGTERM)
    assert up.process.returncode == 0, up.output
    assert took < 15, f"stopping took {took:.1f}s"
    time.sleep(0.5)
    assert processes_with(up.marker) == [], "a child process outlived `borderwatch up`"

    # A second `up` on the same data directory finds its data again: the view is
    # rebuilt from Kafka, so the counts are back before any new event.
    again = Up(data_dir)
    ups.append(again)
    api2 = again.wait_for(r"API\s+(http://127\.0\.0\.1:\d+)/api/v1/sections", 120).group(1)
    token2 = again.wait_for(r"Authorization: Bearer (bw_\S+)", 5).group(1)
    assert token2 == token, "the local token is kept in the data directory"
    assert _total(again.get(api2 + "/api/v1/sections", token2)) >= total
    again.stop(signal.SIGINT)
    assert again.process.returncode == 0, again.output
    time.sleep(0.5)
    assert processes_with(again.marker) == []


def test_up_reports_a_dead_child_and_stops_the_rest(data_dir: Path, ups: list[Up]) -> None:
    up = Up(data_dir, "--insecure-no-auth")
    ups.append(up)
    up.wait_for(r"AUTHENTICATION IS DISABLED", 120)
    api_pid = int(up.wait_for(r"api=(\d+)", 5).group(1))
    os.kill(api_pid, signal.SIGKILL)
    up.process.wait(timeout=30)
    assert up.process.returncode == 1
    up.stop()
    assert "api was killed by signal 9" in up.output, up.output
    assert "last lines of" in up.output
    time.sleep(0.5)
    assert processes_with(up.marker) == []


def test_bad_sections_file_stops_startup_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "sections.yaml"
    bad.write_text(
        "sections:\n  - id: LV-KRA\n    name: Krāslava\n    country: LV\n    neighbour: BY\n"
        "    centre: {lat: 95.0, lon: 27.2}\n    polyline: [[55.7, 27.0], [55.8, 27.1]]\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env["BW_SECTIONS_FILE"] = str(bad)
    result = subprocess.run(
        [*_borderwatch(), "up", "--data-dir", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "entry 1 (LV-KRA)" in result.stderr
    assert "centre.lat" in result.stderr


def test_bad_env_var_is_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env["BW_KAFKA_BOOTSTRAP"] = "not-a-host-port"
    result = subprocess.run(
        [*_borderwatch(), "up", "--data-dir", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "BW_KAFKA_BOOTSTRAP" in result.stderr


def test_up_uses_an_existing_cluster_and_starts_no_broker(tmp_path: Path, ups: list[Up]) -> None:
    from services.runtime.broker import EmbeddedKafka

    external = EmbeddedKafka(tmp_path / "external-kafka")
    external.start()
    try:
        external.wait_ready(timeout=90)
        up = Up(
            tmp_path / "d",
            "--insecure-no-auth",
            env={"BW_KAFKA_BOOTSTRAP": external.bootstrap},
        )
        ups.append(up)
        up.wait_for(r"borderwatch is up", 120)
        assert f"using the Kafka cluster at {external.bootstrap}" in up.output
        assert f"Kafka          {external.bootstrap} (external)" in up.output
        assert "kafka=" not in up.output
        assert not (tmp_path / "d" / "kafka").exists()
        up.stop()
        assert up.process.returncode == 0
    finally:
        external.stop()


def _hold(port: int) -> socket.socket | None:
    """Listen on 127.0.0.1:``port`` if it is free (None: something else holds it).

    SO_REUSEADDR as ``port_is_free`` (and ``up``'s own check) bind: without it a port
    an earlier test's connection left in TIME_WAIT looked free to ``free_ports`` and
    could not be held here (one clean-clone run, session 15). A listening socket still
    keeps every other bind out, so ``up`` sees the port taken either way."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    s.listen()
    return s


def _run_up(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    return subprocess.run(
        [*_borderwatch(), "up", "--data-dir", str(data_dir), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_taken_port_stops_up_before_anything_starts(tmp_path: Path) -> None:
    ports = free_ports()
    held = _hold(ports["ingest"])
    assert held is not None
    try:
        t0 = time.monotonic()
        result = _run_up(tmp_path / "d", *(f"--{n}-port={p}" for n, p in ports.items()))
        took = time.monotonic() - t0
    finally:
        held.close()
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr
    assert f"port {ports['ingest']} (ingest) is already in use" in message
    assert "--ingest-port" in message and "BW_INGEST_PORT" in message
    # Only the taken one is named, and nothing was started or written.
    assert str(ports["api"]) not in message
    assert "starting Kafka" not in result.stdout
    assert not (tmp_path / "d").exists()
    assert took < 30


def test_up_defaults_to_ports_8080_8081_6066_and_never_picks_another(tmp_path: Path) -> None:
    """Without flags or settings `up` wants 8080, 8081 and 6066. Each is held here
    (or already held by something else), so `up` must refuse, naming all three and
    how to choose others, and never fall back to a random port."""
    held = [_hold(port) for port in (8080, 8081, 6066)]
    try:
        result = _run_up(tmp_path / "d")
    finally:
        for s in held:
            if s is not None:
                s.close()
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr
    for port, flag, setting in (
        (8080, "--api-port", "BW_API_PORT"),
        (8081, "--ingest-port", "BW_INGEST_PORT"),
        (6066, "--aggregator-port", "BW_AGGREGATOR_PORT"),
    ):
        assert f"port {port} (" in message and "already in use" in message
        assert f"{flag} PORT or {setting}=PORT" in message
    assert "borderwatch is up" not in result.stdout
    assert not (tmp_path / "d").exists()


def test_up_ports_follow_the_settings_and_the_flags_win(tmp_path: Path) -> None:
    ports = free_ports()
    held = [_hold(port) for port in ports.values()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BW_")}
    env.update({f"BW_{n.upper()}_PORT": str(p) for n, p in ports.items()})
    try:
        by_setting = subprocess.run(
            [*_borderwatch(), "up", "--data-dir", str(tmp_path / "d")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        other = free_ports()["api"]
        by_flag = subprocess.run(
            [*_borderwatch(), "up", "--data-dir", str(tmp_path / "d"), f"--api-port={other}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for s in held:
            if s is not None:
                s.close()
    # The BW_ settings decide the ports (all three are held here, so all are named).
    assert by_setting.returncode == 2
    for port in ports.values():
        assert f"port {port} (" in by_setting.stderr, by_setting.stderr
    # A flag wins over its setting: the API port is no longer in the complaint.
    assert by_flag.returncode == 2
    assert f"port {ports['api']} (" not in by_flag.stderr
    assert f"port {ports['ingest']} (ingest)" in by_flag.stderr
