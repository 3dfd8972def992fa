"""Headless Chromium for the browser tests (Debian's chromium and chromium-driver, driven by
selenium). LENET_EXT_REQUIRE_BROWSER=1 (set by CI) turns a missing browser into a failure
instead of a skip, so a CI run cannot pass without having run them."""

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def need_browser():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("LENET_EXT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LENET_EXT_REQUIRE_BROWSER=1 but {', '.join(missing)} missing")
        pytest.skip(f"needs {', '.join(missing)} (apt-get install chromium chromium-driver; pip install selenium)")


def browser():
    """A headless Chromium with its console log kept (driver.get_log("browser"))."""
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
