"""CLI: ``python -m harness build`` and ``python -m harness up [--env-file F]``."""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from harness.binaries import BinariesMissingError
from harness.controlplane import ControlPlane, ControlPlaneError

BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"


def _build() -> int:
    """Run build.sh; it is idempotent, so this is also the "make sure it is built" command."""
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run([bash, str(BUILD_SCRIPT)], check=False).returncode  # noqa: S603 - fixed argv


def _env_lines(cp: ControlPlane) -> list[str]:
    """KEY=value lines, valid both for dotenv parsers and for ``set -a; . FILE``."""
    values = {
        "KUBECONFIG": str(cp.kubeconfig_path),
        "IMAGE_GATE_K8S_SERVER": cp.server_url,
        "IMAGE_GATE_K8S_CA": str(cp.ca_path),
        "IMAGE_GATE_K8S_BIN": str(cp.binaries.directory),
    }
    return [f"{key}={shlex.quote(value)}" for key, value in values.items()]


def _up(env_file: Path | None) -> int:
    """Start the control plane, print how to use it, idle until SIGINT/SIGTERM, clean up."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before start() so a Ctrl-C during boot still ends in an orderly stop().
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        with ControlPlane() as cp:
            if env_file is not None:
                # Written only once the cluster is ready: demo scripts can wait for the file.
                env_file.write_text("\n".join(_env_lines(cp)) + "\n")
            print(f"# control plane {cp.version} ready in {cp.startup_seconds:.1f}s at {cp.server_url}")
            print(f"export KUBECONFIG={shlex.quote(str(cp.kubeconfig_path))}")
            print(f'export PATH={shlex.quote(str(cp.binaries.directory))}:"$PATH"', flush=True)
            try:
                while not stop.wait(1.0):
                    cp.check_running()
            finally:
                if env_file is not None:
                    env_file.unlink(missing_ok=True)
    except (BinariesMissingError, ControlPlaneError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("# control plane stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m harness``."""
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build or reuse etcd, kube-apiserver, kube-controller-manager, helm, kubectl")
    up = commands.add_parser("up", help="run a control plane until SIGINT/SIGTERM")
    up.add_argument("--env-file", type=Path, help="also write KUBECONFIG etc. as KEY=value lines to this file")
    args = parser.parse_args(argv)
    if args.command == "build":
        return _build()
    return _up(args.env_file)


if __name__ == "__main__":
    sys.exit(main())
