import numpy as np
import pytest
from photos import write_image
from PIL import Image

from simrec import ImageDecodeError, load_image
from simrec.pipeline.images import prepare_image, to_rgb


def test_output_is_square_uint8_rgb(tmp_path):
    pixels = load_image(write_image(tmp_path / "a.png", size=(50, 20)), 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


def test_aspect_ratio_kept_by_white_padding(tmp_path):
    pixels = load_image(write_image(tmp_path / "wide.png", colour=(200, 0, 0), size=(80, 20)), 40)
    assert tuple(pixels[0, 20]) == (255, 255, 255)  # top band is padding
    assert pixels[20, 5, 0] > 150 and pixels[20, 5, 1] < 60  # middle row is the red product


def test_alpha_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 5, 10))
    path = tmp_path / "alpha.png"
    image.save(path)
    pixels = load_image(path, 32)
    assert tuple(pixels[16, 28]) == (255, 255, 255)
    assert tuple(pixels[16, 3]) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "LA", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = write_image(tmp_path / f"m{suffix}", colour=(0, 0, 0) if mode == "1" else (200, 40, 40), mode=mode)
    assert load_image(path, 32).shape == (32, 32, 3)


def test_sixteen_bit_grey_is_rescaled_not_clipped():
    image = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    assert image.mode.startswith("I")
    value = to_rgb(image).getpixel((0, 0))
    assert value == (128, 128, 128)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 20, 20))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    pixels = load_image(path, 40)
    # After rotation the photo is 20 wide x 40 tall: black on top, padding at the sides.
    assert pixels[5, 20].mean() < 60 and pixels[35, 20].mean() > 200
    assert pixels[20, 2].mean() > 240


def test_large_jpeg_reduced_decode_matches_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (800, 600, 3), dtype=np.uint8)).resize((600, 800))
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    fast = load_image(path, 64).astype(int)
    with Image.open(path) as full:
        full.load()
        slow = prepare_image(full, 64).astype(int)
    assert np.abs(fast - slow).mean() < 6


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"not an image at all", "not an image"), (None, "truncated")],
)
def test_unreadable_files_raise_one_error_type(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    if content is None:
        data = write_image(tmp_path / "good.jpg", size=(200, 200)).read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as info:
        load_image(path)
    assert info.value.path == str(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageDecodeError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageDecodeError, match="directory"):
        load_image(tmp_path / "dir.jpg")


def test_too_many_pixels_is_refused(tmp_path):
    path = write_image(tmp_path / "huge.png", size=(300, 300))
    with pytest.raises(ImageDecodeError, match="too large"):
        load_image(path, 32, max_pixels=10_000)


def _letterbox_by_hand(image: Image.Image, image_size: int) -> np.ndarray:
    """The hand-written letterbox that ImageOps.pad replaced, kept as the reference."""
    width, height = image.size
    scale = image_size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size != (width, height):
        image = image.resize(new_size, Image.Resampling.BILINEAR)
    if new_size != (image_size, image_size):
        square = Image.new("RGB", (image_size, image_size), (255, 255, 255))
        square.paste(image, ((image_size - new_size[0]) // 2, (image_size - new_size[1]) // 2))
        image = square
    return np.asarray(image, dtype=np.uint8)


@pytest.mark.parametrize("image_size", [32, 33, 64, 224, 225])
def test_letterbox_is_identical_to_the_hand_written_one(image_size):
    rng = np.random.default_rng(image_size)
    sides = [1, 2, 3, 7, 14, 19, 31, 32, 33, 50, 64, 77, 225, 599, 800, 1920, 20000]
    for width in sides:
        for height in sides:
            if width * height > 2_000_000:
                continue
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            expected = _letterbox_by_hand(image, image_size)
            assert np.array_equal(prepare_image(image, image_size), expected), (width, height, image_size)


def test_a_bad_image_size_is_the_callers_mistake_not_the_files(tmp_path):
    from simrec.core.errors import InvalidArgumentError

    path = write_image(tmp_path / "fine.jpg", (200, 30, 30))
    for size in (16, 64.0, True):
        with pytest.raises(InvalidArgumentError, match=r"Expected image_size >= 32 \(an int\)") as raised:
            load_image(path, size)
        assert not isinstance(raised.value, ImageDecodeError)
