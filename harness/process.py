"""Child-process plumbing for the control plane: free ports, log files, clean termination."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class ProcessExitedError(RuntimeError):
    """A component exited while it was expected to keep running; the message has its log tail."""

    def __init__(self, message: str, process: ManagedProcess) -> None:
        super().__init__(message)
        self.process = process


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen so the kernel cannot
    hand out the same port twice. There is an unavoidable window between
    closing them and the component binding; with ephemeral ports that is rare.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it if the parent dies.

    This is the safety net for the one case atexit cannot cover: the test
    runner itself being SIGKILLed (e.g. a CI timeout). Without it etcd and
    kube-apiserver would outlive the run and keep their ports.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """One long-running component whose output goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the child, or None before start."""
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        """Start the process in its own session, so a terminal Ctrl-C reaches only us.

        The parent then shuts components down in order (controller-manager,
        apiserver, etcd) instead of all of them dying at once mid-write.
        """
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(  # noqa: S603 - argv is built by us from fixed flags
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # runs before exec; no locks are taken in between
            )

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has exited (and been reaped by `is_running`), else None."""
        return self._popen.returncode if self._popen else None

    def is_running(self) -> bool:
        """True while the child has not exited."""
        return self._popen is not None and self._popen.poll() is None

    def check_running(self) -> None:
        """Raise :class:`ProcessExitedError` (with the log tail) if the child has exited."""
        if self._popen is not None and self._popen.poll() is not None:
            message = f"{self.name} exited with code {self._popen.returncode}\n{self.describe_log()}"
            raise ProcessExitedError(message, self)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log: enough to see why a component failed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe_log(self, lines: int = 40) -> str:
        """The log tail framed with the component name and the log path."""
        return f"--- last {lines} lines of {self.log_path} ---\n{self.log_tail(lines)}\n--- end of {self.name} log ---"

    def terminate(self, grace_seconds: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds``; always reaps the child."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._popen.wait()
        self._popen = None

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the child's whole process group (it leads its own session)."""
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    watched: Sequence[ManagedProcess] = (),
    interval: float = 0.2,
) -> None:
    """Poll ``condition`` until true; fail fast if a watched process dies, else time out.

    ``condition`` may raise OSError (connection refused while a server boots);
    that counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        for process in watched:
            process.check_running()
        with contextlib.suppress(OSError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
