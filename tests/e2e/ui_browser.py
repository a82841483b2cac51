"""Headless Debian Chromium driven by selenium, and the Streamlit UI as a real process.

Shared by the end-to-end test and by anyone who wants screenshots of the UI.
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from lumenal.stack.components import ui_argv
from lumenal.stack.processes import ManagedProcess, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def missing_browser() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def start_ui(log_dir: Path, env: dict[str, str]) -> tuple[ManagedProcess, str]:
    """``streamlit run ui/app.py`` on a free port; returns the process and its URL."""
    port = free_port()
    proc = ManagedProcess("ui", ui_argv(sys.executable, port), log_dir / "ui.log", env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.read().strip() == b"ok"

    proc.start()
    wait_for(healthy, 60, "streamlit", proc)
    return proc, url


def chromium(profile: Path, width: int = 1440, height: int = 1000) -> WebDriver:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    return driver


def quit_browser(driver: WebDriver, profile: Path) -> None:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_until(driver: WebDriver, check: Callable[[], object], what: str, timeout_s: float = 60) -> object:
    """Poll ``check`` (a truthy result wins); Streamlit renders in several passes."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            out = check()
            if out:
                return out
        except Exception as exc:  # noqa: BLE001 - stale/missing elements while rendering
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{what} not seen after {timeout_s:.0f}s ({last}); page text:\n{page_text(driver)[:3000]}")


def page_text(driver: WebDriver) -> str:
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except Exception:  # noqa: BLE001
        return "(no page)"


def idle(driver: WebDriver) -> bool:
    """Streamlit finished its run (no 'running' status widget)."""
    return not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')


def button(driver: WebDriver, label: str) -> WebElement | None:
    """The visible button with a text line starting with ``label`` (icons and shortcut
    hints are lines of their own), preferring an exact line."""
    found = []
    for b in driver.find_elements(By.CSS_SELECTOR, '[data-testid^="stBaseButton"]'):
        lines = [line.strip() for line in b.text.split("\n")]
        if b.is_displayed() and any(line.startswith(label) for line in lines):
            found.append((label not in lines, b))
    return min(found, key=lambda x: x[0])[1] if found else None


def fill(driver: WebDriver, label: str, value: str) -> None:
    """Type into the text input whose aria-label is ``label``."""
    box = driver.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')
    box.clear()
    box.send_keys(value)


def log_in(driver: WebDriver, url: str, username: str, password: str) -> None:
    driver.get(url)
    wait_until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, 'input[aria-label="Username"]'), "login form")
    fill(driver, "Username", username)
    fill(driver, "Password", password)
    wait_until(driver, lambda: button(driver, "Log in"), "login button").click()
    wait_until(driver, lambda: button(driver, "Log out"), "logged-in sidebar")


def open_page(driver: WebDriver, title: str) -> None:
    """Follow the sidebar link ``title`` (a reload would start a new, logged-out session)."""
    def link() -> WebElement | None:
        for a in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]'):
            if title in a.text.split("\n"):
                return a
        return None
    wait_until(driver, link, f"sidebar link {title!r}").click()
