"""Text/image → point cloud: our pipeline, its exports, depth back-projection, Shap-E, and bad input."""

import io
import struct

import numpy as np
import plyfile
import pytest
import torch
import trimesh
from PIL import Image

from pipelines import depth3d, pointcloud, shap_e
from pipelines.errors import StudioError
from pipelines.export import ply_bytes, ply_header
from pipelines.jobs import Progress
from pipelines.pointcloud import PointCloudRequest
from pipelines.pointcloud_model import PointCloudPipeline
from pipelines.samplers import build_scheduler
from tiny_models import tiny_pointcloud_pipeline, tiny_shap_e_pipeline

TINY_PC = "tiny-pointcloud"


@pytest.fixture(scope="module")
def pc_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pc-models")
    tiny_pointcloud_pipeline().save_pretrained(folder / TINY_PC, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def pc_engine(pc_models, tmp_path_factory):
    from pipelines.engine import Engine

    return Engine(pc_models, tmp_path_factory.mktemp("pc-outputs"))


def sample(pipe, sampler="DDPM", seed=3, points=64):
    pipe.scheduler = build_scheduler(sampler, pipe.scheduler.config, seed=seed)
    out = pipe("a red torus", num_points=points, num_inference_steps=4, guidance_scale=3.0,
               generator=torch.Generator().manual_seed(seed))
    return out.points[0], out.colors[0]


def test_pipeline_round_trips_through_save_and_load_with_identical_points(tmp_path):
    pipe = tiny_pointcloud_pipeline()
    pipe.save_pretrained(tmp_path / "pc", safe_serialization=True)
    assert (tmp_path / "pc" / "denoiser" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list((tmp_path / "pc").rglob("*.bin"))
    loaded = PointCloudPipeline.from_pretrained(tmp_path / "pc", local_files_only=True, use_safetensors=True)
    before, after = sample(pipe), sample(loaded)
    assert before[0].shape == (64, 3) and before[1].dtype == np.uint8
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert not np.array_equal(sample(loaded, seed=4)[0], after[0])  # the seed matters


@pytest.mark.parametrize("sampler", ["DDIM", "DPM++ 2M", "UniPC", "Euler a", "Heun"])
def test_pipeline_runs_with_any_diffusers_scheduler(sampler):
    points, colors = sample(tiny_pointcloud_pipeline(), sampler)
    assert points.shape == (64, 3) and colors.shape == (64, 3) and np.isfinite(points).all()


def test_upsampling_keeps_the_coarse_cloud_and_adds_points():
    from pipelines.pointcloud_model import to_channels

    pipe = tiny_pointcloud_pipeline()
    coarse = sample(pipe, points=32)
    out = pipe("a red torus", num_points=96, num_inference_steps=4, generator=torch.Generator().manual_seed(1),
               known=to_channels(*coarse))
    dense, colors = out.points[0], out.colors[0]
    assert dense.shape == (96, 3)
    assert np.allclose(dense[:32], coarse[0]) and np.array_equal(colors[:32], coarse[1])


def test_ply_header_is_exact_and_the_file_parses_back(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(50, 3)).astype(np.uint8)
    data = ply_bytes(points, colors, "a red torus\nSteps: 25, Seed: 1")
    assert data.startswith(
        b"ply\nformat binary_little_endian 1.0\ncomment a red torus\ncomment Steps: 25, Seed: 1\n"
        b"element vertex 50\nproperty float x\nproperty float y\nproperty float z\n"
        b"property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    assert len(data) == len(ply_header(50, "a red torus\nSteps: 25, Seed: 1")) + 50 * 15
    vertex = plyfile.PlyData.read(io.BytesIO(data))["vertex"].data
    assert np.array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), points)
    assert np.array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1), colors)


def test_tab_job_writes_ply_and_glb_with_the_same_points_and_colours(pc_engine):
    job = pc_engine.submit_pointcloud(PointCloudRequest(prompt="a red torus", model=TINY_PC, points=100, steps=3,
                                                        seed=5))
    saved, _ = job.outcome()
    cloud = saved[0]
    assert cloud.ply.parent.parent == pc_engine.store.root / "pointcloud" and pc_engine.store.contains(cloud.glb)
    data = plyfile.PlyData.read(str(cloud.ply))
    vertex = data["vertex"].data
    assert len(vertex) == 100
    assert np.array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), cloud.generated.points)
    assert np.array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1), cloud.generated.colors)
    assert data.comments[0] == "a red torus" and "Seed: 5" in data.comments[1] and f"Model: {TINY_PC}" in data.comments[1]
    glb = cloud.glb.read_bytes()
    assert struct.unpack("<III", glb[:12]) == (0x46546C67, 2, len(glb))
    geometry = list(trimesh.load(cloud.glb, file_type="glb").geometry.values())[0]
    assert isinstance(geometry, trimesh.PointCloud)
    assert np.allclose(geometry.vertices, cloud.generated.points)
    assert np.array_equal(geometry.colors[:, :3], cloud.generated.colors)


def plane_depth(width=48, height=32):
    """The inverse depth of a tilted plane, brighter = nearer: affine in pixel coordinates."""
    v, u = np.mgrid[0:height, 0:width]
    return Image.fromarray((40 + 3 * u + 2 * v).astype(np.uint8))


def test_depth_back_projection_of_a_plane_gives_coplanar_points():
    image = Image.new("RGB", (48, 32), (200, 30, 40))
    points, colors = depth3d.backproject(image, plane_depth(), 800, seed=0)
    assert points.shape == (800, 3) and np.abs(points).max() <= 1.0 + 1e-6
    centred = points - points.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    assert singular[2] < 1e-4 * singular[0]  # no thickness: one plane
    assert singular[1] > 0.2 * singular[0]  # but a real 2D spread, not a line
    assert np.all(colors == (200, 30, 40))
    z = depth3d.backproject(image, Image.new("L", (48, 32), 128), 200, seed=0)[0][:, 2]
    assert np.ptp(z) < 1e-6  # a flat depth map: a plane facing the camera


def test_depth_back_projection_separates_near_and_far():
    depth = np.zeros((32, 32), np.uint8)
    depth[:, 16:] = 255  # right half near
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = (0, 255, 0)
    points, colors = depth3d.backproject(Image.fromarray(image), Image.fromarray(depth), 1024, seed=1)
    near = colors[:, 1] == 255
    assert points[near, 2].min() > points[~near, 2].max()  # nearer = larger z (camera looks down −z)


def test_image_mode_through_the_engine_with_an_uploaded_depth_map(pc_engine):
    job = pc_engine.submit_pointcloud(PointCloudRequest(mode="image", image=Image.new("RGB", (48, 32), "blue"),
                                                        depth=plane_depth(), points=300, seed=2))
    cloud = job.outcome()[0][0]
    assert cloud.generated.points.shape == (300, 3)
    assert "Mode: image" in cloud.generated.parameters and cloud.ply.is_file()


def test_shap_e_with_tiny_random_components_runs_to_latents_offline(tmp_path):
    from diffusers import ShapEPipeline

    tiny_shap_e_pipeline().save_pretrained(tmp_path / "shap-e", safe_serialization=True)
    pipe = ShapEPipeline.from_pretrained(tmp_path / "shap-e", local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    progress = Progress()
    latents = shap_e.latents(pipe, "a red torus", steps=2, guidance=3.0, seed=0, progress=progress)
    again = shap_e.latents(pipe, "a red torus", steps=2, guidance=3.0, seed=0)
    assert latents.shape == (1, 32, 32) and torch.isfinite(latents).all()
    assert torch.equal(latents, again)
    assert progress.total == 2 and progress.step == 2
    # (its renders work too, but take ~1 min on a CPU; its mesh needs a real checkpoint's tables)


def test_shap_e_mesh_is_sampled_to_a_coloured_cloud_on_its_surface():
    from diffusers.pipelines.shap_e.renderer import MeshDecoderOutput

    # a unit cube (z up, as Shap-E's meshes), red at the bottom and blue at the top
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    top = (corners[:, 2] > 0).astype(np.float32)
    mesh = MeshDecoderOutput(verts=torch.tensor(corners), faces=torch.tensor(faces),
                             vertex_channels={"R": torch.tensor(1 - top), "G": torch.zeros(8), "B": torch.tensor(top)})
    points, colors = shap_e.mesh_to_cloud(mesh, 2000, seed=0)
    assert points.shape == (2000, 3)
    assert np.allclose(np.abs(points).max(axis=1), 1.0, atol=1e-5)  # every point on a face
    assert np.allclose(colors[:, 0].astype(int) + colors[:, 2], 255, atol=1)  # red↔blue blend
    up = points[:, 1]  # z-up turned y-up
    assert colors[up > 0.99, 2].min() >= 254 and colors[up < -0.99, 0].min() >= 254


@pytest.mark.parametrize("request_args, message", [
    (dict(prompt="a red torus", points=8), "Points must be between 16 and 16384"),
    (dict(prompt="a red torus", points=100_000), "Points must be between 16 and 16384"),
    (dict(prompt="a red torus", points=512, upsample_to=256), "Upsampled points must be more"),
    (dict(mode="image", points=512), "Image → 3D needs an image"),
    (dict(prompt="   "), "Text → 3D needs a prompt"),
    (dict(prompt="a red torus", model="no-such-model"), "Unknown point-cloud model 'no-such-model'"),
    (dict(prompt="a red torus", model="openai/shap-e"), "'openai/shap-e' is not downloaded"),
    (dict(prompt="a red torus", model=TINY_PC, steps=0), "Steps must be between"),
    (dict(mode="sideways"), "Unknown mode 'sideways'"),
])
def test_bad_input_gets_a_clear_error(pc_engine, request_args, message):
    job = pc_engine.submit_pointcloud(PointCloudRequest(**request_args))
    with pytest.raises(StudioError, match=message.replace("(", r"\(")):
        job.outcome()


def test_image_mode_without_a_depth_model_or_map_says_what_to_do(pc_engine):
    job = pc_engine.submit_pointcloud(PointCloudRequest(mode="image", image=Image.new("RGB", (16, 16))))
    with pytest.raises(StudioError, match="upload a depth map"):
        job.outcome()


def test_point_cloud_models_are_listed_apart_from_image_models(pc_engine):
    names = pointcloud.model_names(pc_engine.manager)
    assert names[0] == "Shapes point clouds (demo)" and TINY_PC in names and "openai/shap-e" in names
    image_names = pc_engine.manager.catalog.names()
    assert TINY_PC not in image_names and "Shapes point clouds (demo)" not in image_names
    assert pc_engine.manager.default_entry.name == "Shapes demo (64px)"
    from pipelines.text2image import Text2ImageRequest  # typed into an image tab anyway: a clear refusal

    with pytest.raises(StudioError, match="is a point-cloud model: use it in the 3D point cloud tab"):
        pc_engine.submit_text2image(Text2ImageRequest("a red torus", model="Shapes point clouds (demo)")).outcome()


def test_the_point_cloud_model_stays_loaded_across_image_model_switches(pc_engine):
    manager = pc_engine.manager
    entry = pointcloud.resolve_model(manager, TINY_PC)
    pipe = pointcloud.load(manager, entry)
    assert entry.sampler == "DPM++ 2M" and entry.cfg_scale == 3.0  # card-less: the point-cloud defaults
    manager.pipeline(manager.default_entry)  # the image tabs load (or switch) their model meanwhile
    assert manager.loaded_side("pointcloud") == entry and pointcloud.load(manager, entry) is pipe
    manager.unload()  # "Unload and free memory" empties every slot
    assert manager.loaded_side("pointcloud") is None
