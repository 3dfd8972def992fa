"""report.html in a real headless Chromium: no console errors, and its interactive parts respond:
the t-SNE tooltip, the confusion-matrix cells, the sorting of the failures."""

import os

import pytest
from browser import browser, console_errors

pytestmark = pytest.mark.slow  # trains, then opens report.html in Chromium


@pytest.fixture(scope="module")
def page(trained_run):
    driver = browser()
    driver.get("file://" + os.path.abspath(os.path.join(trained_run, "report.html")))
    yield driver
    driver.quit()


def test_no_console_errors(page):
    from selenium.webdriver.common.by import By

    assert page.find_element(By.ID, "tsne-canvas").size["width"] > 300
    assert not console_errors(page)


def test_tsne_point_hover_shows_the_digit(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = page.find_element(By.ID, "tsne-canvas")
    page.execute_script("arguments[0].scrollIntoView()", canvas)
    tip = page.find_element(By.ID, "tsne-tip")
    assert not tip.is_displayed()
    n = page.execute_script("return window.lenetReport.points")
    assert n >= 100
    for k in (0, n // 2, n - 1):
        x, y, slot = page.execute_script(f"return window.lenetReport.tsnePoint({k})")
        w, h = canvas.size["width"], canvas.size["height"]
        ActionChains(page).move_to_element_with_offset(canvas, int(x - w / 2), int(y - h / 2)).perform()
        assert tip.is_displayed()
        assert tip.text.startswith("test #") and "true" in tip.text and "predicted" in tip.text
        assert "confidence" in tip.text and tip.find_elements(By.TAG_NAME, "canvas")


def test_confusion_cell_lists_its_digits(page):
    from selenium.webdriver.common.by import By

    cells = page.find_elements(By.CSS_SELECTOR, "#confusion td.cell")
    assert len(cells) == 100
    off = [
        c
        for c in cells
        if c.get_attribute("data-true") != c.get_attribute("data-pred") and int(c.get_attribute("data-count")) > 0
    ]
    diag = [c for c in cells if c.get_attribute("data-true") == c.get_attribute("data-pred")]
    for cell in (off[0], diag[0]):
        page.execute_script("arguments[0].scrollIntoView()", cell)
        cell.click()
        listing = page.find_element(By.ID, "cell-list")
        count = int(cell.get_attribute("data-count"))
        assert int(listing.get_attribute("data-count")) == count
        cards = listing.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == min(count, 60) and f"{count} test digit" in listing.text
        t, p = cell.get_attribute("data-true"), cell.get_attribute("data-pred")
        assert all(c.get_attribute("data-true") == t and c.get_attribute("data-pred") == p for c in cards)


def test_failures_sort(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def values(attr):
        return [float(c.get_attribute(attr)) for c in page.find_elements(By.CSS_SELECTOR, "#failures-grid .card")]

    conf = values("data-conf")
    assert conf and conf == sorted(conf, reverse=True)
    select = Select(page.find_element(By.ID, "sort"))
    select.select_by_value("confidence-asc")
    assert values("data-conf") == sorted(conf)
    select.select_by_value("true")
    true = values("data-true")
    assert true == sorted(true) and len(true) == len(conf)
    select.select_by_value("predicted")
    assert values("data-pred") == sorted(values("data-pred"))
    assert not console_errors(page)
