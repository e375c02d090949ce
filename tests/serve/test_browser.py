"""The page in a real browser: `simrec serve` on a loopback port, driven by headless Chromium.

Playwright cannot download its own browser here, so it drives the system's Chromium
(Debian's ``chromium`` package; ``.ci/run`` installs it). Without one it fails in CI with
what to install, and is skipped with that message on a machine that has none.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from paths import ROOT
from processes import free_port

from simrec import make_synthetic_catalog
from simrec.cli import main

pytestmark = pytest.mark.browser


K = 5


def _chromium() -> str:
    for candidate in (os.environ.get("SIMREC_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    message = "no Chromium found: apt-get install -y chromium (or set SIMREC_CHROMIUM to a Chrome binary)"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs it (.ci/run): there the browser test is never skipped
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    zip_path = make_synthetic_catalog(
        folder / "c.zip", colours=["red", "blue", "green"], shapes=["shirt", "bag"], n_variants=2, image_size=96
    )
    index = folder / "index"
    assert main(["index", str(zip_path), "--out", str(index), "--weights", "random", "--image-size", "32", "-q"]) == 0
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "simrec", "serve", str(index), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"simrec serve did not start: {(folder / 'server.log').read_text()}")
                time.sleep(0.3)
        yield url, index
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(120_000)  # the first photo query builds the model
        yield page
        browser.close()


def test_grid_click_upload_and_drop(server, page, tmp_path):
    from playwright.sync_api import expect

    url, index = server
    page.goto(url + "/")
    tiles = page.locator("#grid .tile")
    expect(tiles).to_have_count(12)
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
    expect(page.locator("#warning")).to_be_visible()
    expect(page.locator("#warning")).to_contain_text("untrained")
    page.screenshot(path=str(tmp_path / "grid.png"), full_page=True)

    page.select_option("#label", "red")
    expect(tiles).to_have_count(4)
    assert set(page.locator("#grid .tile .caption").all_inner_texts()) <= {
        "red/bag_1 (red)",
        "red/bag_2 (red)",
        "red/shirt_1 (red)",
        "red/shirt_2 (red)",
    }

    tiles.first.click()
    results = page.locator("#results .result")
    expect(results).to_have_count(K)
    expect(page.locator("#answer-title")).to_contain_text("Most similar to red/")
    # The default ranks by a blend of look and colour, whose distance is in units of each term's spread.
    expect(results.first.locator(".distance")).to_have_text(re.compile(r"#1\s+distance \d+\.\d{4}"))
    page.screenshot(path=str(tmp_path / "product.png"), full_page=True)

    photo = shutil.copyfile(_catalog_photo(index, "blue/bag_2"), tmp_path / "bag_2.jpg")  # as a shopper names it
    page.set_input_files("#photo", str(photo))
    # The first photo query builds the model in the server: allow it time.
    expect(page.locator("#answer-title")).to_contain_text("your photo bag_2.jpg", timeout=180_000)
    expect(results).to_have_count(K)
    expect(results.first.locator(".caption")).to_have_text("blue/bag_2 (blue)")
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)

    page.evaluate(
        """async () => {
            const blob = await (await fetch('/images/green/shirt_1')).blob();
            const data = new DataTransfer();
            data.items.add(new File([blob], 'dropped.jpg', {type: blob.type}));
            const zone = document.getElementById('dropzone');
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
        }"""
    )
    expect(page.locator("#answer-title")).to_contain_text("dropped.jpg", timeout=60_000)
    expect(results.first.locator(".caption")).to_have_text("green/shirt_1 (green)")
    page.screenshot(path=str(tmp_path / "drop.png"), full_page=True)
    for name in ("grid", "product", "upload", "drop"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_errors_are_shown_on_the_page(server, page):
    from playwright.sync_api import expect

    url, _ = server
    page.goto(url + "/")
    expect(page.locator("#grid .tile")).to_have_count(12)
    page.fill("#k", "99")
    page.locator("#grid .tile").first.click()
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("Expected k <= 11")  # the word of the page's own field, #k


def _catalog_photo(index, product_id):
    """The file of a product's photo, wherever the index stores it (zip photos are stored by content)."""
    from simrec import load_index

    catalog = load_index(index).catalog.set_index("product_id")
    return Path(catalog.at[product_id, "path"])
