"""Click through the studio in headless Chromium (Debian's, driven by Playwright) like a person would."""

import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, TINY
from pipelines import metadata

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(engine):
    from playwright.sync_api import sync_playwright

    from studio.app import build_app, launch_options

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's package (apt-get install chromium); .ci/run does.")
    app = build_app(engine)
    app.queue()
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **launch_options(engine))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        yield page
        browser.close()
    app.close()


def test_text_to_image_in_the_browser(page, engine):
    page.get_by_label("Prompt", exact=True).fill("a red circle on a blue background")
    model = page.locator("#txt2img_model input")
    model.fill(TINY)
    model.press("Enter")
    for size in ("#txt2img_width", "#txt2img_height"):
        box = page.locator(f"{size} input[type=number]")
        box.fill("64")
        box.press("Enter")
    page.get_by_role("button", name="Generate").click()
    image = page.locator("#txt2img_gallery img").first
    image.wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "txt2img.png"), full_page=True)
    info = page.locator("#txt2img_info textarea").input_value()
    assert info.startswith("a red circle on a blue background\nSteps:")
    assert f"Model: {TINY}" in info
    saved = sorted(engine.store.root.glob("txt2img/*/*.png"), key=lambda p: p.stat().st_mtime)[-1]
    assert metadata.read_parameters(Image.open(saved)) == info
