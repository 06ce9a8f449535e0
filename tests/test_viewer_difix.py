"""The "Difix: fix render" checkbox in a REAL browser: headless Chromium (Debian ``chromium`` + ``chromium-driver``)
driven by Selenium against stock ``ns-viewer`` on a short ``difix3d-splatfacto`` run (with one persisted fix round),
against the viewer of a running ``ns-train``, and against ``difix-viewer`` on a STOCK ``splatfacto`` run.

The fixer is a tiny random-weight model, so "on" shows the fixer's noise-like output: the check is that toggling
switches the displayed image, not image quality.
Set ``DIFIX_VIEWER_SCREENSHOTS=<dir>`` to keep the screenshots (the pair in docs/ was made this way).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from difix_ns.render import testing as rt

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROME_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--window-size=1200,800",
]
CHECKBOX_LABEL = "Difix: fix render"
RGB_FIXED_XPATH = "//*[contains(text(), 'rgb_fixed')] | //input[@value='rgb_fixed']"
"""The "Output type" dropdown showing rgb_fixed."""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stock_run(difix3d_splatfacto_run):
    """The shared difix3d-splatfacto run (tests/conftest.py): its config carries the fixer, so *stock* ns-viewer
    shows the Difix controls, and its fix round at step 3 is persisted, so the viewer has a novel-view pool."""
    return difix3d_splatfacto_run


def _fixer_args(tiny: Path) -> list:
    return ["--pipeline.fixer.model-name", str(tiny), "--pipeline.fixer.dtype", "float32",
            "--pipeline.fixer.device", "cpu"]


@contextmanager
def _serve(cmd: list, env: dict, work: Path, log_path: Path, port: int):
    """Start a viewer process (ns-viewer or ns-train) and yield its URL once it listens on ``port``."""
    log = open(log_path, "w")
    env = dict(env, COLUMNS="400")  # rich wraps console lines at 80 columns when writing to a file
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{cmd[0]} exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError(f"{cmd[0]} did not listen on {port}:\n{log_path.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def viewer_url(stock_run):
    work, env, config, tiny = stock_run
    port = _free_port()
    cmd = ["ns-viewer", "--load-config", str(config),
           "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port)]
    with _serve(cmd, env, work, work / "viewer.log", port) as url:
        yield url, work


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'chrome-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1200, 800)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver, path: Path) -> np.ndarray:
    import imageio.v3 as iio

    driver.save_screenshot(str(path))
    return iio.imread(path)[..., :3].astype(np.int16)


def _image_region(shot: np.ndarray) -> np.ndarray:
    """Below the title bar, left of the control panel docked on the right: where the rendered image is."""
    return shot[80:, : shot.shape[1] // 2]


def _wait_for(predicate, timeout: float, interval: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if isinstance(value, np.ndarray) or (value is not None and value is not False and value != []):
            return value
        time.sleep(interval)
    return None


def _find_checkbox(browser, log_path: Path):
    """The "Difix: fix render" label and its checkbox input (waits for the GUI to arrive over the websocket)."""
    from selenium.webdriver.common.by import By

    xpath = f"//*[normalize-space(text())='{CHECKBOX_LABEL}']"
    label = _wait_for(lambda: browser.find_elements(By.XPATH, xpath), timeout=120)
    assert label, f"no '{CHECKBOX_LABEL}' control in the viewer page; log:\n{log_path.read_text()[-2000:]}"
    checkbox = browser.find_element(
        By.XPATH, f"{xpath}/ancestor::*[.//input[@type='checkbox']][1]//input[@type='checkbox']"
    )
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", label[0])  # in the screenshots
    return label[0], checkbox


def _stable_shot(browser, label, path: Path, differs_from=None):
    """Predicate: a screenshot whose image region no longer changes (the static full-resolution render arrived)."""
    def check():
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", label)
        a = _screenshot(browser, path)
        time.sleep(2)
        b = _screenshot(browser, path)
        region = _image_region(b)
        if np.abs(_image_region(a) - region).mean() > 0.5 or region.std() < 1.0:
            return None
        if differs_from is not None and np.abs(region - _image_region(differs_from)).mean() < 5.0:
            return None
        return b
    return check


def _reference_names(browser) -> list:
    """Values of the viewer's text inputs that are training image names (the "Difix reference" field).

    Read in one script call: the viewer page has many inputs, and one WebDriver round trip per input took seconds."""
    values = browser.execute_script("return Array.from(document.querySelectorAll('input'), e => e.value || '');")
    return [v for v in values if v.endswith(".jpg")]


def _pool_messages(log_path: Path) -> list:
    """The viewer's "Difix: showing N novel views (<source>) under /difix/novel_views" lines (rich wraps them)."""
    import re

    text = " ".join(log_path.read_text().split())
    return re.findall(r"Difix: showing \d+ novel views \((.*?)\) under /difix/novel_views", text)


def test_difix_checkbox_switches_displayed_image(viewer_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, work = viewer_url
    log_path = work / "viewer.log"
    out = Path(os.environ.get("DIFIX_VIEWER_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    browser.get(url)
    label, checkbox = _find_checkbox(browser, log_path)
    assert not checkbox.is_selected()
    assert not _reference_names(browser), "a reference is shown before anything was fixed"

    off = _wait_for(_stable_shot(browser, label, out / "viewer_difix_off.png"), timeout=150, interval=0.5)
    assert off is not None, "the viewer never showed a stable rendered image"
    # stock ns-viewer on a finished difix3d run draws the persisted fix round as the novel-view pool
    pool = _wait_for(lambda: _pool_messages(log_path), 20)
    assert pool and "difix_rounds (step 3)" in pool[0], log_path.read_text()[-2000:]

    browser.execute_script("arguments[0].click();", checkbox)
    assert _wait_for(checkbox.is_selected, timeout=10)
    on = _wait_for(_stable_shot(browser, label, out / "viewer_difix_on.png", differs_from=off), timeout=240)
    assert on is not None, f"image did not change after ticking the box; log:\n{log_path.read_text()[-2000:]}"
    # the displayed output is now rgb_fixed and the reference view is named in the panel
    assert _wait_for(lambda: browser.find_elements(By.XPATH, RGB_FIXED_XPATH), 20)
    assert _wait_for(lambda: _reference_names(browser), 20), "the reference view's file name is not shown"

    browser.execute_script("arguments[0].click();", checkbox)
    assert _wait_for(lambda: not checkbox.is_selected(), timeout=10)
    diffs = []

    def back():
        shot = _screenshot(browser, out / "viewer_difix_off_again.png")
        diffs.append(float(np.abs(_image_region(shot) - _image_region(off)).mean()))
        return diffs[-1] < 3.0

    assert _wait_for(back, timeout=120, interval=2.0), f"unticking did not return to the plain render: {diffs[-5:]}"


def test_difix_checkbox_during_ns_train(stock_run, browser, tmp_path):
    """The controls also exist in the viewer of a running ``ns-train``; the in-memory pool is drawn after a round."""
    work, env, _, tiny = stock_run
    data = work / "fox7"
    port = _free_port()
    out = Path(os.environ.get("DIFIX_VIEWER_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["ns-train", "difix3d-splatfacto", "--data", str(data), "--output-dir", str(work / "train_viewer"),
           "--experiment-name", "fox", "--timestamp", "run", "--max-num-iterations", "5",
           *[a for a in rt.CPU_TRAIN_ARGS if a not in ("--vis", "tensorboard")], "--vis", "viewer",
           "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port),
           *_fixer_args(tiny), "--pipeline.fix-steps", "3",
           "nerfstudio-data", "--downscale-factor", "4", "--eval-mode", "interval", "--eval-interval", "4"]
    log_path = work / "train_viewer.log"
    with _serve(cmd, env, work, log_path, port) as url:
        browser.get(url)
        label, checkbox = _find_checkbox(browser, log_path)
        assert not checkbox.is_selected()
        # the viewer stays up after the 5 steps; by then the step-3 round has filled the in-memory pool
        assert _wait_for(lambda: "Training Finished" in log_path.read_text(), timeout=240), log_path.read_text()[-2000:]
        off = _wait_for(_stable_shot(browser, label, out / "viewer_difix_train_off.png"), timeout=150, interval=0.5)
        assert off is not None, "the ns-train viewer never showed a stable rendered image"
        browser.execute_script("arguments[0].click();", checkbox)
        assert _wait_for(checkbox.is_selected, timeout=10)
        on = _wait_for(_stable_shot(browser, label, out / "viewer_difix_train_on.png", differs_from=off), 240)
        assert on is not None, f"ns-train viewer image did not change; log:\n{log_path.read_text()[-2000:]}"
        assert _wait_for(lambda: _reference_names(browser), 20), "the reference view's file name is not shown"
        assert "in-memory pool" in _pool_messages(log_path), log_path.read_text()[-2000:]


def test_difix_viewer_on_stock_splatfacto(stock_run, stock_splatfacto_run, browser, tmp_path):
    """``difix-viewer`` gives a STOCK splatfacto run (trained without the plugin) the same checkbox and reference."""
    from selenium.webdriver.common.by import By

    work, env, _, tiny = stock_run
    config = stock_splatfacto_run[2]
    port = _free_port()
    cmd = ["difix-viewer", "--load-config", str(config), "--viewer.websocket-host", "127.0.0.1",
           "--viewer.websocket-port", str(port), "--fixer.model-name", str(tiny), "--fixer.dtype", "float32",
           "--fixer.device", "cpu"]
    log_path = work / "difix_viewer.log"
    with _serve(cmd, env, work, log_path, port) as url:
        browser.get(url)
        label, checkbox = _find_checkbox(browser, log_path)
        assert not checkbox.is_selected()
        off = _wait_for(_stable_shot(browser, label, tmp_path / "stock_off.png"), timeout=150, interval=0.5)
        assert off is not None, "difix-viewer never showed a stable rendered image"
        browser.execute_script("arguments[0].click();", checkbox)
        assert _wait_for(checkbox.is_selected, timeout=10)
        on = _wait_for(_stable_shot(browser, label, tmp_path / "stock_on.png", differs_from=off), timeout=240)
        assert on is not None, f"difix-viewer image did not change; log:\n{log_path.read_text()[-2000:]}"
        assert _wait_for(lambda: _reference_names(browser), 20), "the reference view's file name is not shown"
        assert browser.find_elements(By.XPATH, RGB_FIXED_XPATH)
