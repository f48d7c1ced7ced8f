"""End to end in a real browser: start ``policygrad lab``, open every page in headless Chromium, click its
main buttons, check that what is shown changes, and save a screenshot of each page.

Screenshots go to a temporary folder, or to ``$POLICYGRAD_LAB_SCREENSHOTS`` (the committed set in
docs/lab/ is made that way); page load times are written beside them as ``load_times.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the lab extra is not installed: pip install 'policygrad[lab]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

pytestmark = pytest.mark.timeout(300)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Debian's chromium as root in a sandboxed machine with no outside network (see the project's CI notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
LAPTOP = {"width": 1366, "height": 768}
SERVER_START_TIMEOUT = 90.0  # seconds; the machine may be shared and slow
PAGE_TIMEOUT_MS = 45_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``policygrad lab --port N`` on a free port, up until the module's tests are done."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium chromium-driver; .ci/run does this)")
    port = _free_port()
    command = [shutil.which("policygrad") or "", "lab", "--port", str(port)]
    if not command[0]:
        command = [sys.executable, "-m", "policygrad.cli", "lab", "--port", str(port)]
    log = (tmp_path_factory.mktemp("lab") / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path_factory.getbasetemp())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"policygrad lab did not answer on {url}: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("POLICYGRAD_LAB_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def page(lab_url: str, shots: Path) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=LAPTOP, device_scale_factor=1)
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.load_times = {}  # type: ignore[attr-defined]
        yield page
        (shots / "load_times.json").write_text(json.dumps(page.load_times, indent=2) + "\n")  # type: ignore[attr-defined]
        browser.close()


def _idle(page: sync_api.Page) -> None:
    """Wait until Streamlit has finished running the page's script, then let Vega finish drawing."""
    page.wait_for_timeout(250)  # a click's rerun starts asynchronously
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")
    page.wait_for_timeout(250)


def _snap(page: sync_api.Page, path: Path) -> None:
    """A screenshot of the whole page at laptop width (Streamlit scrolls an inner element, so grow the window)."""
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": LAPTOP["width"], "height": max(LAPTOP["height"], int(height))})
    page.wait_for_timeout(400)
    page.screenshot(path=path)
    page.set_viewport_size(LAPTOP)


def _open(page: sync_api.Page, url: str, heading: str, name: str) -> float:
    """Load ``url`` in a fresh tab state and return the seconds until its heading and first chart show."""
    start = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(state="visible")
    page.locator("[data-testid='stVegaLiteChart'] svg").first.wait_for(state="visible")
    seconds = time.perf_counter() - start
    page.load_times[name] = round(seconds, 2)  # type: ignore[attr-defined]
    _idle(page)
    return seconds


def _chart(page: sync_api.Page, index: int = 0) -> bytes:
    return page.locator("[data-testid='stVegaLiteChart']").nth(index).screenshot()


def _click(page: sync_api.Page, label: str) -> None:
    page.get_by_role("button", name=label, exact=True).click()
    page.wait_for_timeout(150)
    _idle(page)
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, f"after {label!r}: {errors.first.inner_text()[:500]}"


def _type(page: sync_api.Page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(150)
    _idle(page)


def _text(page: sync_api.Page, text: str, timeout_ms: float = PAGE_TIMEOUT_MS) -> None:
    page.get_by_text(text).first.wait_for(state="visible", timeout=timeout_ms)


def test_bandit_page(page: sync_api.Page, lab_url: str, shots: Path) -> None:
    _open(page, lab_url + "/", "Bandit", "bandit")
    for name in ("REINFORCE sampler", "Gradient scatter", "Baseline", "Evolution"):
        assert page.get_by_role("link", name=name).count() >= 1  # the navigation shows every page
    bars = _chart(page)
    _click(page, "Pull C")
    _text(page, "You pulled C")
    _text(page, "Reward history (1 pulls)")
    assert _chart(page) != bars
    _type(page, "policy pulls N (1–5,000)", "300")
    _click(page, "Let the policy sample N pulls")
    _text(page, "The policy pulled 300 times")
    _text(page, "Reward history (301 pulls)")
    page.get_by_text("Reveal the hidden means").click()
    _idle(page)
    _text(page, "Hidden means:")
    _snap(page, shots / "bandit.png")
    _type(page, "learning rate α", "-1")
    _text(page, "learning rate must be greater than 0")
    assert page.get_by_role("button", name="Pull A", exact=True).is_disabled()
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=shots / "bandit-bad-input.png")
    _type(page, "learning rate α", "0.1")
    _click(page, "Reset")
    _text(page, "No pulls yet")


def _sample(page: sync_api.Page, clicks: list[tuple[str, ...]]) -> None:
    """Click each ``(button, *texts)`` in turn, waiting for its texts to show; the first chart must change."""
    before = _chart(page)
    for button, *texts in clicks:
        _click(page, button)
        for text in texts:
            _text(page, text)
    assert _chart(page) != before


def test_sampler_page(page: sync_api.Page, lab_url: str, shots: Path) -> None:
    _open(page, lab_url + "/sampler", "REINFORCE sampler", "sampler")
    one = ("Sample trajectory", "this episode's G₀", "Returns G₀ of 1 episodes")
    _sample(page, [one, ("Sample 100",), ("Sample 100", "Returns G₀ of 201 episodes")])
    _snap(page, shots / "sampler.png")
    _click(page, "Reset")
    _text(page, "Returns G₀ of 0 episodes")


def test_scatter_page(page: sync_api.Page, lab_url: str, shots: Path) -> None:
    _open(page, lab_url + "/scatter", "Gradient scatter", "scatter")
    _sample(page, [("Sample 1", "of yours point the wrong way"), ("Sample 10",), ("Sample 10",), ("Sample 10",)])
    assert page.get_by_test_id("stMetricValue").first.inner_text() == "31"
    _text(page, "(+0.71, -0.71)")
    _snap(page, shots / "scatter.png")
    _click(page, "Reset")
    assert page.get_by_test_id("stMetricValue").first.inner_text() == "0"


def test_baseline_page(page: sync_api.Page, lab_url: str, shots: Path) -> None:
    _open(page, lab_url + "/baseline", "Baseline", "baseline")
    _text(page, "Click Run simulation")
    _type(page, "seeds (1–20)", "0")
    _click(page, "Run simulation")
    _text(page, "number of seeds must be between 1 and 20")
    _type(page, "seeds (1–20)", "5")
    _click(page, "Run simulation")
    _text(page, "The baseline divides the variance", timeout_ms=120_000)
    assert page.locator("[data-testid='stVegaLiteChart']").count() == 4  # two example charts, two curve charts
    _snap(page, shots / "baseline.png")


def test_evolution_page(page: sync_api.Page, lab_url: str, shots: Path) -> None:
    _open(page, lab_url + "/evolution", "Evolution", "evolution")
    page.get_by_role("heading", name="REINFORCE", exact=True).wait_for()
    _text(page, "Source: policygrad.algorithms.reinforce")
    page.get_by_role("radio", name="PPO", exact=True).click()
    _idle(page)
    page.get_by_role("heading", name="PPO", exact=True).wait_for()
    _text(page, "core of RLHF")
    _text(page, "Source: policygrad.algorithms.ppo")
    # A click on the A2C box of the graph (left of its label; Vega draws SVG) selects A2C.
    label = page.locator("[data-testid='stVegaLiteChart'] svg text", has_text="A2C").first.bounding_box()
    assert label is not None
    page.mouse.click(label["x"] - 20, label["y"] + label["height"] / 2)
    _idle(page)
    page.get_by_role("heading", name="A2C", exact=True).wait_for()
    # Stop is tested on the slowest step of the chain: A2C and PPO finish 500,000 CartPole steps
    # in seconds, before a click on Stop could land.
    page.get_by_role("radio", name="Actor-Critic", exact=True).click()
    _idle(page)
    page.get_by_role("heading", name="Actor-Critic", exact=True).wait_for()
    _type(page, "steps (1,000–500,000)", "500000")
    _click(page, "Train Actor-Critic")
    _text(page, "of 500,000 steps", timeout_ms=90_000)
    time.sleep(1.5)
    _text(page, "of 500,000 steps")
    _snap(page, shots / "evolution-training.png")
    _click(page, "Stop training")
    _text(page, "Actor-Critic stopped after", timeout_ms=60_000)
    page.get_by_role("button", name="Stop training", exact=True).wait_for(state="detached")
    _idle(page)
    assert page.locator("[data-testid='stVegaLiteChart']").count() == 2  # the graph and one training curve
    assert page.get_by_role("button", name="Train Actor-Critic", exact=True).is_enabled()
    _snap(page, shots / "evolution.png")


def test_pages_load_fast(page: sync_api.Page, lab_url: str) -> None:
    """Each page, opened now that the app is up, shows its heading and first chart within 2 s.

    The budget is for a machine to itself: on a shared one it grows with the load average per
    core (the measured times are written to load_times.json either way).
    """
    load_per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    budget = 2.0 * max(1.0, load_per_core)
    page.load_times["load average per core"] = round(load_per_core, 2)  # type: ignore[attr-defined]
    slow = {}
    for path, heading in (
        ("/", "Bandit"),
        ("/sampler", "REINFORCE sampler"),
        ("/scatter", "Gradient scatter"),
        ("/baseline", "Baseline"),
        ("/evolution", "Evolution"),
    ):
        seconds = _open(page, lab_url + path, heading, f"{heading} (again)")
        if seconds > budget:
            slow[heading] = round(seconds, 2)
    assert not slow, f"pages slower than {budget:.1f} s (load per core {load_per_core:.1f}): {slow}"
