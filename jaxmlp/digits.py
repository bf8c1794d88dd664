"""Any picture of one digit -> the 28x28 image MNIST's own digits are, for classifying the user's images.

MNIST's preprocessing (LeCun et al., "The MNIST database"): the NIST digit, white ink on
black, was size-normalised to fit a 20x20 box keeping its aspect ratio (antialiased, hence
grey levels), then placed in a 28x28 image with its centre of mass at the centre. Here,
`mnist_style(image)` does the same to a photograph or a drawing:

1. to grey in [0, 1]: uint8 (or any integer type) is read as 0..255, floats as 0..1, bool as 0/1;
   RGB by ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B, what Pillow's "L" conversion computes);
   RGBA is first composited on a white page;
2. background and polarity: the background is the median of the border pixels (the outer
   one-pixel frame). When it lies above the middle of the image's range, (min + max) / 2, the
   digit is dark on light and the picture is inverted. The background level is then subtracted
   (negative values clipped to 0), so a grey page becomes black;
3. crop to the ink: the bounding box of the pixels above INK_THRESHOLD (0.1) times the brightest,
   after the background is subtracted; the pixels below it are set to 0 (paper texture, noise),
   and the ink is stretched so that its brightest pixel is 1;
4. scale so that the longer side is 20 px, keeping the aspect ratio (the shorter side rounded, at
   least 1 px), with Pillow's LANCZOS filter on float pixels: when shrinking it averages over the
   source area as MNIST's antialiasing did (BOX does too), and unlike BOX it also enlarges small
   drawings smoothly rather than in blocks. Its slight ringing is clipped to [0, 1];
5. place in 28x28 so that the centre of mass is at CENTRE = (14, 14) in pixel-centre coordinates
   (pixel (i, j) covers [i - 0.5, i + 0.5]), the classic scripts' convention (`rows / 2 - cy`),
   rounded to whole pixels and clamped so that the 20-px digit stays inside the frame. The centre of
   the frame (13.5, 13.5) measured slightly lower on the test of MNIST's own digits made to look
   photographed (see tests/test_digits.py), and MNIST's own digits have their centre of mass near 14;
6. back to uint8 0..255, white ink on black, as `load_mnist` gives the images.

`load_image(path)` reads a PNG, JPEG, BMP (anything Pillow reads, any mode) into the numpy
array that `mnist_style` takes, `decode_image(data, name)` does the same for bytes (the drawing
page's PNG), and `load_digit(path)` does both steps for a file.

A picture whose grey levels span less than MIN_CONTRAST (8/255) is refused as one colour: a blank
page photographed or saved as JPEG varies by a few levels, and stretching that noise to a digit
would classify nothing.
"""

from __future__ import annotations

import io

import numpy as np

IMAGE_SIDE = 28  # MNIST's image, pixels per side
BOX_SIDE = 20  # the longer side of the digit in it
CENTRE = (14.0, 14.0)  # where the centre of mass goes, (row, column) in pixel-centre coordinates
MIN_CONTRAST = 8 / 255  # brightest minus darkest grey level, below which a picture counts as one colour
INK_THRESHOLD = 0.1  # ink: above this fraction of the brightest pixel, once the background is subtracted
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, Pillow's RGB -> "L" weights


def mnist_style(image) -> np.ndarray:
    """The (28, 28) uint8 MNIST-style image (white on black, 20-px digit, centred by mass) of one digit's picture.

    `image`: numpy array (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA; uint8 (or any integer
    type) in 0..255, float in 0..1, or bool. Dark on light or light on dark, any background level.
    The steps and their conventions are in the module's docstring.
    """
    grey = to_grey(image)  # (H, W) in [0, 1]
    ink = ink_of(grey)  # (H, W) in [0, 1], background 0
    digit = crop_to_ink(ink)  # (h, w), h or w nonzero on every edge
    small = resize_longer_side(digit, BOX_SIDE)  # (<= 20, <= 20), longer side 20
    placed = place_by_mass(small, IMAGE_SIDE, CENTRE)  # (28, 28)
    return np.round(placed * 255).astype(np.uint8)


def load_image(path) -> np.ndarray:
    """The pixels of an image file as `mnist_style` takes them, read by Pillow (see `decode_image`).

    A missing file raises FileNotFoundError as `open` does; an empty file raises
    ValueError("<path>: the file is empty"), and one Pillow cannot read
    ValueError("<path>: not an image (<Pillow's reason>)").
    """
    with open(path, "rb") as file:
        data = file.read()
    if not data:
        raise ValueError(f"{path}: the file is empty")
    return decode_image(data, str(path))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """The pixels of an encoded image (PNG, JPEG, BMP, anything Pillow reads, any mode) as a numpy array.

    Returns uint8 (H, W) for grey modes ("1", "L"), (H, W, 4) RGBA for any mode with transparency
    (an alpha band or a transparent palette entry), (H, W, 3) RGB for the other colour modes
    (palette, CMYK, YCbCr, ...), and float (H, W) in 0..1 for 16-bit grey ("I;16" and "I": divided
    by 65535) and as stored for 32-bit float ("F"). Multi-frame files give their first frame.
    Bytes Pillow cannot read raise ValueError("<name>: not an image (<Pillow's reason>)"), and an image
    over Pillow's decompression-bomb limit ValueError("<name>: image too large (...)").
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            return _pixels(picture)
    except UnidentifiedImageError:
        raise ValueError(f"{name}: not an image (in none of the formats Pillow reads: PNG, JPEG, BMP, ...)") from None
    except Image.DecompressionBombError as error:  # a small file may declare a huge image
        raise ValueError(f"{name}: image too large ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:  # a known format, but truncated or corrupt
        raise ValueError(f"{name}: not an image ({error})") from error


def load_digit(path) -> np.ndarray:
    """The (28, 28) uint8 MNIST-style digit of an image file: `mnist_style(load_image(path))`.

    Every ValueError names the file ("<path>: image is one colour ..."); a missing file raises
    FileNotFoundError.
    """
    pixels = load_image(path)
    try:
        return mnist_style(pixels)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _pixels(picture) -> np.ndarray:
    """A loaded Pillow image as a numpy array; see `load_image`."""
    if "A" in picture.getbands() or "transparency" in picture.info:
        return np.asarray(picture.convert("RGBA"))  # (H, W, 4)
    if picture.mode in ("1", "L"):
        return np.asarray(picture.convert("L"))  # (H, W)
    if picture.mode.startswith("I"):
        return np.clip(np.asarray(picture, dtype=np.float64) / 65535, 0, 1)  # (H, W)
    if picture.mode == "F":
        return np.asarray(picture, dtype=np.float64)  # (H, W)
    return np.asarray(picture.convert("RGB"))  # (H, W, 3)


def to_grey(image) -> np.ndarray:
    """(H, W) float64 in [0, 1] from a checked image: integers / 255, luma of RGB, RGBA composited on white."""
    values = _unit_values(_checked(image))  # (H, W) or (H, W, C)
    if values.ndim == 2:
        return values
    if values.shape[2] == 4:
        alpha = values[..., 3:]  # (H, W, 1)
        values = values[..., :3] * alpha + (1 - alpha)  # (H, W, 3) on a white page
    if values.shape[2] == 1:
        return values[..., 0]
    return values @ LUMA  # (H, W)


def _checked(image) -> np.ndarray:
    """The image if it is a non-empty (H, W) or (H, W, 1/3/4) numpy array of numbers, else TypeError/ValueError."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (use load_image(path) for a file); got {type(image).__name__}")
    if not (image.dtype == bool or np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"image must hold bool, integer or float values; got dtype {image.dtype}")
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) grey or (H, W, 3/4) RGB(A); got {image.ndim} dimensions {image.shape}")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must have 1 (grey), 3 (RGB) or 4 (RGBA) channels; got {image.shape[2]}")
    if image.size == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def _unit_values(image: np.ndarray) -> np.ndarray:
    """The image's values as float64 in [0, 1]: integers must be in 0..255, floats finite and in 0..1."""
    if image.dtype == bool:
        return image.astype(np.float64)
    if np.issubdtype(image.dtype, np.integer):
        low, high = int(image.min()), int(image.max())
        if low < 0 or high > 255:
            raise ValueError(f"image of integers must hold 0..255; got values from {low} to {high}")
        return image.astype(np.float64) / 255
    if not np.all(np.isfinite(image)):
        raise ValueError(f"image must be finite; it has {int(np.sum(~np.isfinite(image)))} NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > 1:
        raise ValueError(f"image of floats must hold 0..1 (uint8 for 0..255); got values from {low:g} to {high:g}")
    return image.astype(np.float64)


def border(grey: np.ndarray) -> np.ndarray:
    """(2H + 2W - 4,) the outer one-pixel frame of an (H, W) image (all of it when H or W <= 2)."""
    if min(grey.shape) <= 2:
        return grey.ravel()
    return np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])


def ink_of(grey: np.ndarray) -> np.ndarray:
    """(H, W) ink in [0, 1], background 0: inverted when the border's median is above the range's middle,
    then the border's median subtracted. ValueError when the image is one colour (contrast < MIN_CONTRAST)."""
    low, high = float(grey.min()), float(grey.max())
    if high == low:
        raise ValueError(f"image is one colour (every pixel {low * 255:.3g}/255): there is no digit in it")
    if high - low < MIN_CONTRAST:
        raise ValueError(
            f"image is one colour (grey levels {low * 255:.3g} to {high * 255:.3g} of 255, "
            f"less than {MIN_CONTRAST * 255:.0f} apart): there is no digit in it"
        )
    background = float(np.median(border(grey)))
    if background > (low + high) / 2:  # light page, dark ink
        return np.clip(background - grey, 0, None)
    return np.clip(grey - background, 0, None)


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """(h, w) the bounding box of the pixels above INK_THRESHOLD * max, the rest zeroed, stretched to max 1."""
    peak = float(ink.max())
    if peak == 0:
        raise ValueError("image has no ink: no pixel differs from the background (the border's median)")
    kept = np.where(ink > INK_THRESHOLD * peak, ink / peak, 0.0)  # (H, W)
    rows, cols = np.nonzero(kept)
    return kept[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def resize_longer_side(digit: np.ndarray, side: int) -> np.ndarray:
    """(h', w') with max(h', w') == side, aspect kept (shorter side rounded, >= 1), LANCZOS, clipped to [0, 1]."""
    from PIL import Image

    height, width = digit.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow: (width, height)
    resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float64), 0, 1)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean pixel position, pixel (i, j) at (i, j)."""
    total = image.sum()
    rows = np.arange(image.shape[0]) @ image.sum(axis=1) / total
    cols = np.arange(image.shape[1]) @ image.sum(axis=0) / total
    return float(rows), float(cols)


def place_by_mass(digit: np.ndarray, side: int, centre: tuple[float, float]) -> np.ndarray:
    """(side, side) zeros with `digit` (h, w) pasted so its centre of mass is at `centre`, to the nearest
    whole pixel, the paste clamped to lie inside the frame."""
    height, width = digit.shape
    mass_row, mass_col = centre_of_mass(digit)
    top = min(max(round(centre[0] - mass_row), 0), side - height)
    left = min(max(round(centre[1] - mass_col), 0), side - width)
    placed = np.zeros((side, side))
    placed[top : top + height, left : left + width] = digit
    return placed
