"""
``python -m cloudsim``: run the HSS and SAS simulators for the demo or by hand.

Prints one JSON line with the URLs (``{"hss": "...", "sas": "..."}``), also to
``--ready-file`` if given, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import threading
from pathlib import Path

from cloudsim.catalogue import Catalogue, default_catalogue_path
from cloudsim.server import HSS_QUOTA, SimState, Simulators
from image_gate.clouds.quota import Rate


def _rate(text: str) -> Rate | None:
    if text in ("", "off", "none"):
        return None
    return Rate.parse(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudsim", description=__doc__)
    parser.add_argument("--catalogue", type=Path, default=default_catalogue_path())
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--hss-port", type=int, default=0)
    parser.add_argument("--sas-port", type=int, default=0)
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    parser.add_argument(
        "--hss-rate", default=str(HSS_QUOTA), help="calls/seconds per user per API, or 'off' (default: HSS's quota)"
    )
    parser.add_argument("--sas-rate", default="off", help="calls/seconds per account per API, or 'off'")
    parser.add_argument("--ready-file", type=Path, help="write the URLs here as JSON once listening")
    args = parser.parse_args(argv)

    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)

    catalogue = Catalogue.load(args.catalogue)
    state = SimState(catalogue=catalogue, hss_rate=_rate(args.hss_rate), sas_rate=_rate(args.sas_rate))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Simulators(
        catalogue, host=args.host, hss_port=args.hss_port, sas_port=args.sas_port, ssl_context=context, state=state
    ) as sim:
        line = json.dumps(sim.urls)
        print(line, flush=True)
        if args.ready_file:
            args.ready_file.write_text(line + "\n", encoding="utf-8")
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
