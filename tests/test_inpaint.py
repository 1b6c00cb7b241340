import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import TINY
from pipelines import inpaint
from pipelines.errors import StudioError
from pipelines.inpaint import InpaintRequest
from pipelines.jobs import Progress


def scene(size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def box_mask(size=(64, 64), box=(16, 16, 40, 40)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def run(engine, **kw):
    request = InpaintRequest(**{"image": scene(), "mask": box_mask(), "prompt": "a yellow triangle", "model": TINY,
                                "steps": 3, "seed": 5, "mask_blur": 0, **kw})
    return inpaint.run(engine.manager, request, Progress())


def test_pixels_outside_the_mask_are_byte_identical_and_the_masked_region_changes(engine):
    result = np.asarray(run(engine).images[0].image)
    source, mask = np.asarray(scene()), np.asarray(box_mask()) > 0
    assert np.array_equal(result[~mask], source[~mask])
    assert np.abs(result[mask].astype(int) - source[mask]).mean() > 10


def test_with_blur_pixels_beyond_the_feather_are_unchanged(engine):
    blur = 4
    result = np.asarray(run(engine, mask_blur=blur).images[0].image)
    far = np.ones((64, 64), bool)
    far[16 - 3 * blur:40 + 3 * blur + 1, 16 - 3 * blur:40 + 3 * blur + 1] = False
    assert np.array_equal(result[far], np.asarray(scene())[far])
    inside = np.asarray(box_mask((64, 64), (16 + 3 * blur, 16 + 3 * blur, 40 - 3 * blur, 40 - 3 * blur))) > 0
    assert np.abs(result[inside].astype(int) - np.asarray(scene())[inside]).mean() > 10


def test_invert_mask_keeps_the_box(engine):
    result = np.asarray(run(engine, invert_mask=True).images[0].image)
    mask = np.asarray(box_mask()) > 0
    assert np.array_equal(result[mask], np.asarray(scene())[mask])


def test_outpainting_right_widens_and_keeps_the_left_part(engine):
    result = run(engine, mask=None, outpaint_right=64).images[0]
    array = np.asarray(result.image)
    assert result.image.size == (128, 64)
    assert np.array_equal(array[:, :64], np.asarray(scene()))
    assert "Outpaint: right 64" in result.parameters


def test_only_masked_area_processes_a_crop_and_pastes_it_back(engine):
    big = scene((256, 192))
    mask = box_mask((256, 192), (180, 120, 200, 140))
    pipe = engine.manager.pipeline(engine.manager.entry(TINY), "inpaint")
    sizes = []
    original_call = type(pipe).__call__

    def spy(self, *args, **kwargs):
        sizes.append((kwargs["image"].size, kwargs["width"], kwargs["height"]))
        return original_call(self, *args, **kwargs)

    type(pipe).__call__ = spy
    try:
        result = run(engine, image=big, mask=mask, only_masked=True, only_masked_padding=8).images[0]
    finally:
        type(pipe).__call__ = original_call
    entry = engine.manager.entry(TINY)
    assert sizes == [((entry.width, entry.height), entry.width, entry.height)]  # the crop, at the model's size
    array, keep = np.asarray(result.image), ~(np.asarray(mask) > 0)
    assert result.image.size == (256, 192) and np.array_equal(array[keep], np.asarray(big)[keep])
    assert "Inpaint area: Only masked" in result.parameters


def test_a_dedicated_nine_channel_inpainting_model_loads_by_path_and_runs(engine, models_dir):
    from tiny_models import save_tiny_sd

    save_tiny_sd(models_dir / "tiny-inpaint", in_channels=9)
    result = np.asarray(run(engine, model="tiny-inpaint").images[0].image)
    mask = np.asarray(box_mask()) > 0
    assert np.array_equal(result[~mask], np.asarray(scene())[~mask])
    with pytest.raises(StudioError, match="dedicated inpainting model"):
        engine.manager.pipeline(engine.manager.entry("tiny-inpaint"), "text2image")
    catalog = engine.manager.catalog  # told apart by its UNet config, without loading weights
    assert catalog.resolve("tiny-inpaint").task == "inpaint"
    assert "tiny-inpaint" in catalog.names("inpaint") and "tiny-inpaint" not in catalog.names("text2image")
    assert TINY in catalog.names("inpaint")  # plain models inpaint too (blend mode)


def test_a_model_card_names_its_inpainting_variant(tmp_path):
    from pipelines.models import Catalog
    from tiny_models import save_tiny_sd

    demo = tmp_path / "demo"
    save_tiny_sd(demo / "base")
    save_tiny_sd(demo / "base-inpaint", in_channels=9)
    (demo / "base" / "studio.json").write_text('{"name": "Base", "inpainting_model": "Base inpainting"}')
    (demo / "base-inpaint" / "studio.json").write_text('{"name": "Base inpainting", "task": "inpaint"}')
    catalog = Catalog(tmp_path / "models", demo_dir=demo)
    assert catalog.default(cuda=False)[0].name == "Base"  # an inpainting model is never the default
    assert catalog.inpainting_choice("Base") == "Base inpainting"
    assert catalog.inpainting_choice(TINY) == TINY  # no variant: the model itself (blend mode)
    # a hub variant is chosen only once downloaded: offline, SD 1.5 stays itself
    assert catalog.inpainting_choice("stable-diffusion-v1-5/stable-diffusion-v1-5").endswith("v1-5")
    assert catalog.resolve("stable-diffusion-v1-5/stable-diffusion-inpainting").task == "inpaint"


def test_masks_from_a_painted_layer_and_of_another_size(engine):
    layer = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((8, 8, 20, 20), fill=(255, 255, 255, 255))
    result = run(engine, mask=layer)
    assert result.warnings and "resized" in result.warnings[0]
    mask = np.asarray(layer.getchannel("A").resize((64, 64), Image.NEAREST)) > 0
    assert np.array_equal(np.asarray(result.images[0].image)[~mask], np.asarray(scene())[~mask])


@pytest.mark.parametrize("overrides,message", [
    ({"mask": Image.new("L", (64, 64), 0)}, "mask is empty"),
    ({"image": None}, "No image"),
    ({"image": Image.new("RGBA", (64, 64), (255, 0, 0, 0))}, "transparent"),
    ({"image": Image.new("RGB", (3000, 64))}, "limit"),
    ({"outpaint_left": -5}, "Outpaint amounts"),
    ({"mask_blur": 500}, "Mask blur"),
    ({"fill": "magic"}, "masked-content fill"),
    ({"strength": 0}, "Denoising strength"),
])
def test_bad_input_is_a_clear_error(engine, overrides, message):
    with pytest.raises(StudioError, match=message):
        run(engine, **overrides)
