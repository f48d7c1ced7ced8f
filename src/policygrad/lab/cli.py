"""``policygrad lab [--port N]``: start the interactive lab and print its address."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import sys
from typing import Any

from policygrad.errors import PolicygradError

INSTALL_HINT = "the lab needs its extra: pip install 'policygrad[lab]'"
HELP = "start the interactive lab in your browser (needs: pip install 'policygrad[lab]')"
DESCRIPTION = "The theory, clickable: bandit, REINFORCE sampler, gradient scatter, baseline, the chain."


def is_local(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (a loopback address or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cmd_lab(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("altair") is None:
        raise PolicygradError(INSTALL_HINT)
    from policygrad.lab.server import check_port, serve

    check_port(args.host, args.port)
    if not is_local(args.host):
        print(
            f"policygrad lab: warning: serving on {args.host}, not only this machine: anyone who can reach port "
            f"{args.port} can use the lab and run training on this machine (no login); use --host 127.0.0.1 "
            "unless the network is yours",
            file=sys.stderr,
            flush=True,
        )
    print(f"policygrad lab: http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    serve(args.host, args.port)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``lab`` command to the ``policygrad`` CLI."""
    from policygrad.cli import add_command
    from policygrad.lab.server import DEFAULT_PORT

    parser = add_command(subparsers, "lab", _cmd_lab, HELP, DESCRIPTION)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; another address lets anyone who can "
        "reach the port run training here)",
    )
