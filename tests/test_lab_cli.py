"""``policygrad lab``: one clear line for every bad start (port taken or out of range, the extra missing)."""

from __future__ import annotations

import importlib.util
import socket

import pytest

from policygrad.cli import main


def test_lab_is_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["lab", "--help"])
    out = capsys.readouterr().out
    assert "--port" in out and "bandit" in out.lower()


def test_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["lab", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"port {port} on 127.0.0.1 is already in use" in err and "--port N" in err


@pytest.mark.parametrize("port", ["0", "70000"])
def test_port_out_of_range(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--port", port]) == 1
    assert "--port must be between 1 and 65535" in capsys.readouterr().err


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    assert main(["lab"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'policygrad[lab]'" in err


@pytest.mark.parametrize("host,warned", [("0.0.0.0", True), ("192.168.1.5", True), ("127.0.0.1", False)])
def test_a_non_local_host_is_warned_about(
    host: str, warned: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from policygrad.lab import server

    monkeypatch.setattr(server, "check_port", lambda *a: None)
    monkeypatch.setattr(server, "serve", lambda *a: None)
    assert main(["lab", "--host", host]) == 0
    err = capsys.readouterr().err
    assert ("anyone who can reach port" in err and "run training on this machine" in err) == warned
