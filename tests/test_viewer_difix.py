"""The "Difix: fix render" checkbox in a REAL browser: headless Chromium (Debian ``chromium`` + ``chromium-driver``)
driven by Selenium against stock ``ns-viewer`` on a short ``difix3d-splatfacto`` run.

The run's fixer is a tiny random-weight model, so "on" shows the fixer's noise-like output: the check is that
toggling switches the displayed image, not image quality. (``difix-viewer`` adds the same controls to runs of
stock methods; it shares this code path.)
Set ``DIFIX_VIEWER_SCREENSHOTS=<dir>`` to keep the two screenshots (the pair in docs/ was made this way).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from difix_ns.render import testing as rt

FOX = Path(__file__).parents[1] / ".." / "shared" / "data" / "fox"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROME_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--window-size=1200,800",
]
CHECKBOX_LABEL = "Difix: fix render"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stock_run(tmp_path_factory):
    if not (FOX / "transforms.json").is_file():
        pytest.skip(f"fox scene not found at {FOX} (../shared/data/fox)")
    work = tmp_path_factory.mktemp("viewer")
    env = rt.cpu_env(work)
    data = rt.make_fox_subset(FOX, work / "fox7", stride=8)
    from difix_ns.testing import save_tiny_difix

    tiny = save_tiny_difix(work / "tiny_difix_ref", reference_mixing=True)
    # A difix3d-splatfacto run: its config carries the fixer, so *stock* ns-viewer shows the Difix controls.
    fixer = ["--pipeline.fixer.model-name", str(tiny), "--pipeline.fixer.dtype", "float32",
             "--pipeline.fixer.device", "cpu"]
    config = rt.train_tiny_run(data, work / "outputs", "difix3d-splatfacto", iterations=5, extra=fixer, env=env)
    return work, env, config, tiny


@pytest.fixture(scope="module")
def viewer_url(stock_run):
    work, env, config, tiny = stock_run
    port = _free_port()
    log = open(work / "viewer.log", "w")
    proc = subprocess.Popen(
        ["ns-viewer", "--load-config", str(config),
         "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port)],
        env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"viewer exited {proc.returncode}:\n{(work / 'viewer.log').read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError(f"viewer did not listen on {port}:\n{(work / 'viewer.log').read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}", work
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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


def test_difix_checkbox_switches_displayed_image(viewer_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, work = viewer_url
    out = Path(os.environ.get("DIFIX_VIEWER_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    browser.get(url)
    xpath = f"//*[normalize-space(text())='{CHECKBOX_LABEL}']"
    label = _wait_for(lambda: browser.find_elements(By.XPATH, xpath), timeout=120)
    assert label, f"no '{CHECKBOX_LABEL}' control in the viewer page; viewer log:\n{(work / 'viewer.log').read_text()[-2000:]}"
    checkbox = browser.find_element(By.XPATH, f"{xpath}/ancestor::*[.//input[@type='checkbox']][1]//input[@type='checkbox']")
    assert not checkbox.is_selected()
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", label[0])  # in the screenshots

    def stable(path: Path, differs_from=None):
        """A screenshot whose image region no longer changes (the static full-resolution render arrived)."""
        def check():
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", label[0])
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

    off = _wait_for(stable(out / "viewer_difix_off.png"), timeout=150, interval=0.5)
    assert off is not None, "the viewer never showed a stable rendered image"

    browser.execute_script("arguments[0].click();", checkbox)
    assert _wait_for(checkbox.is_selected, timeout=10)
    on = _wait_for(stable(out / "viewer_difix_on.png", differs_from=off), timeout=240, interval=1.0)
    assert on is not None, f"image did not change after ticking '{CHECKBOX_LABEL}'; log:\n{(work / 'viewer.log').read_text()[-2000:]}"
    # the displayed output is now rgb_fixed and the reference view is named in the panel
    assert _wait_for(lambda: browser.find_elements(By.XPATH, "//*[contains(text(), 'rgb_fixed')] | //input[@value='rgb_fixed']"), 20)
    ref_name = _wait_for(
        lambda: [e for e in browser.find_elements(By.XPATH, "//input") if (e.get_attribute("value") or "").endswith(".jpg")],
        20,
    )
    assert ref_name, "the reference view's file name is not shown"

    browser.execute_script("arguments[0].click();", checkbox)
    assert _wait_for(lambda: not checkbox.is_selected(), timeout=10)
    diffs = []

    def back():
        shot = _screenshot(browser, out / "viewer_difix_off_again.png")
        diffs.append(float(np.abs(_image_region(shot) - _image_region(off)).mean()))
        return diffs[-1] < 3.0

    assert _wait_for(back, timeout=120, interval=2.0), f"unticking did not return to the plain render: {diffs[-5:]}"
