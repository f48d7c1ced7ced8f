"""Starting the lab's web server: Streamlit, in this process, on 127.0.0.1 and a chosen port.

The heavy imports (torch, the library, the page models) happen once, before the server
listens, so that the first page a person opens is as fast as every later one.
"""

from __future__ import annotations

import socket
from pathlib import Path

from policygrad.errors import PolicygradError

APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8501


def check_port(host: str, port: int) -> None:
    """A clear error when ``port`` is out of range or already taken on ``host``."""
    if not 1 <= port <= 65_535:
        raise PolicygradError(f"--port must be between 1 and 65535 (got {port})")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server will: connections of a previous run still closing (TIME_WAIT) do not block the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise PolicygradError(
                f"port {port} on {host} is already in use (another lab or program?); choose another with --port N"
            ) from None


def flag_options(host: str, port: int) -> dict[str, object]:
    """Streamlit's settings for the lab: local only, no browser opened, no usage statistics, no tracebacks shown."""
    return {
        "server.address": host,
        "server.port": port,
        "server.headless": True,
        "server.fileWatcherType": "none",
        "server.runOnSave": False,
        "browser.gatherUsageStats": False,
        "browser.serverAddress": host,
        "browser.serverPort": port,
        "client.toolbarMode": "viewer",
        "client.showErrorDetails": "none",
        "global.developmentMode": False,
        "theme.base": "light",
        "theme.primaryColor": "#3b5bdb",
    }


def warm_up() -> None:
    """Import what every page needs (torch, policygrad.exact, the models, Altair) before serving."""
    import torch

    import policygrad.lab.bandit
    import policygrad.lab.baseline
    import policygrad.lab.charts
    import policygrad.lab.evolution
    import policygrad.lab.sampler
    import policygrad.lab.scatter  # noqa: F401

    torch.set_num_threads(1)


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the lab until interrupted (Ctrl-C). Raises PolicygradError for a port in use."""
    check_port(host, port)
    from streamlit.web import bootstrap

    warm_up()
    # As `streamlit run app.py --server.port …` does: the options as command-line flags, then run.
    options = {name.replace(".", "_"): value for name, value in flag_options(host, port).items()}
    bootstrap.load_config_options(flag_options=options)
    bootstrap.run(str(APP), False, [], options)
