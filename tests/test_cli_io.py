"""difix_ns.io: clear errors that name the file, mode conversion, video round trip, all-or-nothing outputs."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from difix_ns.io import (
    InputError,
    OutputTransaction,
    list_images,
    load_image,
    load_image_tensor,
    probe_image,
    read_video,
    resolve_images,
    video_info,
    write_video,
)
from conftest import FOX_IMAGES_4 as FOX


def _noise(h=80, w=96, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_conversions_to_rgb(tmp_path):
    rgba = np.dstack([_noise(), np.full((80, 96), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(_noise()[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(_noise()[..., 0].astype(np.uint16) * 257).save(tmp_path / "g16.png")
    img = load_image(tmp_path / "a.png")
    assert img.mode == "RGB" and np.array_equal(np.array(img), rgba[..., :3])  # alpha dropped, colour kept
    g = np.array(load_image(tmp_path / "g.png"))
    assert g.shape == (80, 96, 3) and np.array_equal(g[..., 0], g[..., 2])
    g16 = np.array(load_image(tmp_path / "g16.png"))
    assert np.array_equal(g16[..., 1], _noise()[..., 0])  # 16-bit scaled back to the 8-bit values
    t = load_image_tensor(tmp_path / "a.png")
    assert t.shape == (3, 80, 96) and 0 <= float(t.min()) and float(t.max()) <= 1


def test_bad_images_name_the_file(tmp_path):
    with pytest.raises(InputError, match="not found: .*missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("this is not a png")
    with pytest.raises(InputError, match="not an image.*text.png"):
        load_image(tmp_path / "text.png")
    Image.fromarray(_noise(40, 200)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="200x40 px, smaller than the 64 px minimum: .*small.png"):
        probe_image(tmp_path / "small.png")
    Image.fromarray(_noise(128, 128)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    probe_image(tmp_path / "cut.png")  # the header is intact ...
    with pytest.raises(InputError, match="corrupt or truncated.*cut.png"):
        load_image(tmp_path / "cut.png")  # ... the pixels are not
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)


def test_list_images_sorted_and_filtered(tmp_path):
    for name in ("b.JPG", "a.png", "c.webp", "d.jpeg", "notes.txt"):
        Image.fromarray(_noise()).save(tmp_path / name, format="PNG" if name.endswith("txt") else None)
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.webp", "d.jpeg"]
    assert resolve_images(tmp_path / "a.png") == [tmp_path / "a.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="contains no png/jpg/jpeg/webp images: .*empty"):
        list_images(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        resolve_images(tmp_path / "nope")


@pytest.mark.skipif(not FOX.is_dir(), reason=f"fox frames not found at {FOX}")
def test_video_round_trip_keeps_count_and_fps(tmp_path):
    frames = [np.array(Image.open(p).convert("RGB").resize((96, 160))) for p in sorted(FOX.glob("*.jpg"))[:5]]
    write_video(tmp_path / "v.mp4", frames, fps=12.5)
    fps, count, size = video_info(tmp_path / "v.mp4")
    assert (fps, count, size) == (12.5, 5, (96, 160))
    back, fps2 = read_video(tmp_path / "v.mp4")
    assert len(back) == 5 and fps2 == 12.5 and back[0].shape == (160, 96, 3)
    assert np.abs(back[2].astype(int) - frames[2].astype(int)).mean() < 12  # lossy H.264, same content
    (tmp_path / "fake.mp4").write_text("not a video")
    with pytest.raises(InputError, match="fake.mp4"):
        video_info(tmp_path / "fake.mp4")


def test_transaction_commits_atomically(tmp_path):
    out = tmp_path / "new" / "deeper"
    with OutputTransaction(out) as tx:
        tx.path("a.txt").write_text("A")
        assert not (out / "a.txt").exists()  # staged, not yet visible
    assert (out / "a.txt").read_text() == "A"
    assert [p.name for p in out.iterdir()] == ["a.txt"]  # staging folder removed


def test_transaction_rollback_keeps_preexisting_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    (out / "a.txt").write_text("previous a")
    with pytest.raises(RuntimeError, match="boom"):
        with OutputTransaction(out) as tx:
            tx.path("a.txt").write_text("new a")
            tx.path("b.txt").write_text("new b")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "old.txt"]
    assert (out / "a.txt").read_text() == "previous a"
    # A folder created by a failed run is removed again.
    with pytest.raises(RuntimeError):
        with OutputTransaction(tmp_path / "fresh" / "x") as tx:
            tx.path("c.txt").write_text("c")
            raise RuntimeError("boom")
    assert not (tmp_path / "fresh").exists()
    with pytest.raises(InputError, match="not a directory"):
        with OutputTransaction(out / "old.txt"):
            pass
