"""Child processes of ``borderwatch up``: start, wait for readiness, watch, stop.

Children run in their own process group (so Ctrl-C reaches only ``up``, which
then stops them in order) and get SIGTERM from the kernel if ``up`` itself
dies, so no process is left orphaned.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.broker import _pdeathsig, tail


class ChildFailed(RuntimeError):
    def __init__(self, child: Child, detail: str) -> None:
        super().__init__(f"{child.name} {detail}")
        self.child = child
        self.detail = detail


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str | None = None
    # The CA that signed the child's TLS certificate (an https ready_url).
    ready_cafile: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_pdeathsig,
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> int | None:
        return self.process.poll() if self.process else None

    def is_ready(self) -> bool:
        if self.ready_url is None:
            return self.exited() is None
        context = (
            ssl.create_default_context(cafile=str(self.ready_cafile))
            if self.ready_cafile is not None
            else None
        )
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1.0, context=context) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def failure(self) -> str:
        code = self.exited()
        how = (
            f"exited with code {code}"
            if code is not None and code >= 0
            else f"was killed by signal {-(code or 0)}"
        )
        return f"{how}; last lines of {self.log_path}:\n{tail(self.log_path)}"


class NotReady(RuntimeError):
    """A process exited, or did not answer ``/readyz`` with 200 in time."""


def wait_http_ready(
    url: str,
    process: subprocess.Popen[bytes],
    *,
    name: str,
    log_path: Path,
    timeout: float,
) -> None:
    """Poll ``url`` until it answers 200; raise NotReady with the log's tail if
    ``process`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotReady(f"{name} exited ({process.returncode}):\n{tail(log_path, 40)}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.2)
    raise NotReady(f"{name} not ready in {timeout:.0f}s:\n{tail(log_path, 40)}")


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise ChildFailed for the first child that is no longer running."""
        for child in self.children:
            if child.exited() is not None:
                raise ChildFailed(child, child.failure())

    def wait_ready(
        self, children: list[Child], timeout: float, interrupted: Callable[[], bool]
    ) -> None:
        pending = list(children)
        deadline = time.monotonic() + timeout
        while pending:
            if interrupted():
                raise KeyboardInterrupt
            self.check()
            pending = [c for c in pending if not c.is_ready()]
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise ChildFailed(
                    pending[0],
                    f"was not ready after {timeout:.0f}s ({names}); last lines of "
                    f"{pending[0].log_path}:\n{tail(pending[0].log_path)}",
                )
            time.sleep(0.1)

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every child (newest first), wait, then SIGKILL what is left."""
        running = [c for c in reversed(self.children) if c.process and c.exited() is None]
        for child in running:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.process.wait(timeout=5)
        # Anything a child left behind in its group goes too.
        for child in running:
            _signal_group(child, signal.SIGKILL)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.process is None:
        return
    try:
        os.killpg(child.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
