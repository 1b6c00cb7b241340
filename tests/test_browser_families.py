"""The model's family in the browser: picking a Flux model hides the negative prompt, offers flow samplers and
the family's size presets, generates, and Models & settings shows the memory plan it loaded with."""

import pytest

from test_browser import ARTIFACTS, choose, shown, studio_page
from tiny_families import save_tiny_flux


@pytest.fixture(scope="module")
def family_page(tmp_path_factory):
    from pipelines.engine import Engine

    models = tmp_path_factory.mktemp("browser-family-models")
    save_tiny_flux(models / "tiny-flux")
    engine = Engine(models, tmp_path_factory.mktemp("browser-family-outputs"))
    with studio_page(engine) as page:
        yield page, engine


def test_a_flux_model_changes_the_tab_and_the_memory_plan_is_shown(family_page):
    page, engine = family_page
    assert page.locator("#txt2img_negative textarea").is_visible()  # the demo model (SD 1.x) takes one
    choose(page, "#txt2img_model input", "tiny-flux")
    page.locator("#txt2img_negative").wait_for(state="hidden", timeout=10_000)
    page.get_by_role("button", name="Advanced").first.click()
    assert page.locator("#txt2img_sampler input").input_value() == "Euler (flow)"
    assert "Distilled CFG Scale" in page.locator("#txt2img_cfg").inner_text()
    page.locator("#txt2img_size_preset input").click()
    assert page.get_by_role("option", name="1216x832").is_visible()
    page.keyboard.press("Escape")
    page.get_by_label("Prompt", exact=True).fill("a red circle")
    for size in ("#txt2img_width", "#txt2img_height"):
        box = page.locator(f"{size} input[type=number]")
        box.fill("64")
        box.press("Enter")
    page.get_by_role("button", name="Generate").click()
    shown(page, "#txt2img_gallery")
    info = page.locator("#txt2img_info textarea").input_value()
    assert "Family: flux-dev" in info and "Distilled CFG Scale: 3.5" in info
    page.get_by_role("tab", name="Models & settings").click()
    page.locator("#settings_refresh").click()
    status = page.locator("#settings_status")
    page.wait_for_function("() => document.querySelector('#settings_status').innerText.includes('no CUDA GPU')",
                           timeout=20_000)
    assert "memory plan" in status.inner_text() and "Flux.1 [dev]" in status.inner_text()
    page.screenshot(path=str(ARTIFACTS / "families-settings.png"), full_page=True)
