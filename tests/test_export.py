import threading

import pytest
from PIL import Image

from pipelines import metadata
from pipelines.export import OutputStore


def test_saved_files_are_named_in_dated_folders_inside_the_outputs_dir(tmp_path):
    store = OutputStore(tmp_path / "out")
    path = store.save_image(Image.new("RGB", (8, 8)), "p\nSteps: 1, Seed: 2, Size: 8x8", "txt2img", "../../etc/passwd")
    assert store.contains(path) and path.parent.parent.name == "txt2img"
    assert ".." not in path.name and "/" not in path.name and path.name.startswith("00000-")
    assert metadata.read_parameters(Image.open(path)).startswith("p\n")


def test_names_never_collide_under_concurrent_saves(tmp_path):
    store = OutputStore(tmp_path)
    paths = []

    def save():
        paths.append(store.save_image(Image.new("RGB", (8, 8)), "x\nSteps: 1, Seed: 1, Size: 8x8", "txt2img", "1"))

    threads = [threading.Thread(target=save) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 16 and all(p.stat().st_size > 0 for p in paths)


def test_a_failed_write_leaves_no_partial_or_empty_file(tmp_path):
    store = OutputStore(tmp_path)

    class Broken(Image.Image):
        def save(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        store.save_image(Broken(), "x", "txt2img", "1")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_bad_kind_and_format_are_refused(tmp_path):
    store = OutputStore(tmp_path)
    with pytest.raises(ValueError):
        store.folder("../escape")
    with pytest.raises(ValueError, match="output format"):
        store.save_image(Image.new("RGB", (8, 8)), "x", "txt2img", "1", fmt="exe")


def test_history_pages_newest_first_and_filters_by_folder(tmp_path):
    store = OutputStore(tmp_path)
    saved = [store.save_image(Image.new("RGB", (8, 8), (i, 0, 0)), f"n {i}", "txt2img" if i % 2 else "inpaint", "s")
             for i in range(7)]
    first, pages = store.history(per_page=3)
    assert pages == 3 and len(first) == 3
    everything = first + store.history(page=1, per_page=3)[0] + store.history(page=2, per_page=3)[0]
    assert everything == saved[::-1]
    inpainted, pages = store.history("inpaint", per_page=10)
    assert pages == 1 and inpainted == [saved[6], saved[4], saved[2], saved[0]]  # newest first within a folder
    assert store.history(page=99, per_page=3)[0] == store.history(page=2, per_page=3)[0]  # past the end: last page
    assert store.kinds() == ["inpaint", "txt2img"]
