"""Letterbox resizing and input quantization, with the exact inverse mapping for boxes.

Quantization is fused with the /255 normalisation and the channel swap into one lookup table per model:
``lut[pixel]`` is the value the input tensor wants for a uint8 pixel, whatever its dtype, scale and zero
point. One ``np.take`` per image does normalise + quantize + BGR->RGB (:class:`InputWriter` has exact
shortcuts for the two common INT8 layouts). :class:`Preprocessor` is the one letterbox: it places each image
of a batch into the model's input tensor.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

PAD_VALUE = 114  # Ultralytics' letterbox grey


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image of (height, width) was placed into the model's (in_h, in_w) input."""

    scale: float
    pad_left: int
    pad_top: int
    new_w: int
    new_h: int
    width: int
    height: int
    # to_original's affine map as float32 rows over (x1, y1, x2, y2): offset, gain, upper bound.
    _offset: np.ndarray = field(init=False, repr=False, compare=False)
    _gain: np.ndarray = field(init=False, repr=False, compare=False)
    _limit: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Per-axis gain of the rounded resize, as Ultralytics >= 8.4 scale_boxes (exact inverse of the resize).
        rows = {
            "_offset": (self.pad_left, self.pad_top),
            "_gain": (self.new_w / self.width, self.new_h / self.height),
            "_limit": (self.width, self.height),
        }
        for name, (x, y) in rows.items():
            row = np.array([x, y, x, y], np.float32)
            row.flags.writeable = False  # shared: fit() hands the same Letterbox to every frame of a size
            object.__setattr__(self, name, row)

    @classmethod
    def fit(cls, height: int, width: int, in_h: int, in_w: int) -> Letterbox:
        """The placement of a (height, width) image; cached, since a camera keeps its frame size."""
        return _fit(height, width, in_h, in_w)

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Map float32 boxes from model-input pixels back to original-image pixels, clipped to the image."""
        # The same float32 operations as the column pairs (x - pad) / gain, clipped to [0, size], as four
        # ufuncs over the whole (N, 4) block with per-column rows, in place. maximum(0, x), with 0 first:
        # numpy returns the second operand on a tie, so a -0.0 stays -0.0 as np.clip(x, 0, size) keeps it
        # (test_to_original_is_bit_identical_to_the_columnwise_mapping checks it bit for bit).
        out = np.subtract(xyxy, self._offset, dtype=np.float32)
        np.divide(out, self._gain, out=out)
        np.maximum(0, out, out=out)
        return np.minimum(out, self._limit, out=out)

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """Original-image pixels to model-input pixels (the forward mapping; used by tests)."""
        out = np.array(xyxy, dtype=np.float32)
        out[:, [0, 2]] = out[:, [0, 2]] * (self.new_w / self.width) + self.pad_left
        out[:, [1, 3]] = out[:, [1, 3]] * (self.new_h / self.height) + self.pad_top
        return out


@functools.lru_cache(maxsize=256)
def _fit(height: int, width: int, in_h: int, in_w: int) -> Letterbox:
    # Same arithmetic as Ultralytics' LetterBox(auto=False, center=True), so user models see the input
    # they were trained on.
    r = min(in_h / height, in_w / width)
    new_w, new_h = round(width * r), round(height * r)
    dw, dh = (in_w - new_w) / 2, (in_h - new_h) / 2
    return Letterbox(r, round(dw - 0.1), round(dh - 0.1), new_w, new_h, width, height)


def input_lut(dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """256-entry table: uint8 pixel -> model input value (normalised to [0, 1], then quantized if needed)."""
    pixels = np.arange(256, dtype=np.float64) / 255.0
    if np.issubdtype(dtype, np.integer):
        if scale <= 0:
            raise ValueError(f"integer input without quantization parameters (scale={scale})")
        info = np.iinfo(dtype)
        return np.clip(np.round(pixels / scale + zero_point), info.min, info.max).astype(dtype)
    return pixels.astype(dtype)


class InputWriter:
    """Writes a BGR uint8 image into a region of the input tensor: channel order, /255 and quantization
    fused. The two layouts real INT8 models use get exact shortcuts: uint8 with scale 1/255 and zero
    point 0 (the pixels are the values: one cvtColor), and int8 with zero point -128 (pixel ^ 0x80).
    Anything else goes through the lookup table."""

    def __init__(self, dtype: np.dtype, scale: float, zero_point: int, *, rgb: bool) -> None:
        self.lut = input_lut(dtype, scale, zero_point)
        self.dtype = self.lut.dtype
        self.pad = self.lut[PAD_VALUE]
        self.rgb = rgb
        values = self.lut.astype(np.int64)
        if np.array_equal(values, np.arange(256)) and self.dtype == np.uint8:
            self.mode = "copy"
        elif np.array_equal(values, np.arange(256) - 128) and self.dtype == np.int8:
            self.mode = "xor"
        else:
            self.mode = "lut"

    def write(self, image: np.ndarray, region: np.ndarray) -> None:
        if self.mode == "lut":
            region[...] = np.take(self.lut, image[..., ::-1] if self.rgb else image)
            return
        raw = region.view(np.uint8)
        if self.rgb:
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=raw)
        else:
            raw[...] = image
        if self.mode == "xor":
            np.bitwise_xor(raw, 0x80, out=raw)


def quantize_threshold(threshold: float, scale: float, zero_point: int, dtype: np.dtype) -> int:
    """Smallest quantized value whose dequantized value is >= threshold (for filtering before dequantizing)."""
    info = np.iinfo(dtype)
    q = int(np.ceil(threshold / scale + zero_point - 1e-9))
    return max(info.min, min(info.max + 1, q))


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    if scale <= 0 or not np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float32, copy=False)
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


# --------------------------------------------------------------------------- the input tensor


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch ready for the runtime, with each image's letterbox to map boxes back."""

    tensor: np.ndarray
    boxes: tuple[Letterbox, ...]


class Preprocessor:
    """Letterboxes a batch of BGR uint8 images into the model's input tensor (NHWC, or NCHW by a copy)."""

    def __init__(self, input_hw: tuple[int, int], writer: InputWriter, *, nchw: bool) -> None:
        self.input_hw, self.writer, self.nchw = input_hw, writer, nchw

    def prepare(self, images: Sequence[np.ndarray]) -> Prepared:
        in_h, in_w = self.input_hw
        tensor = np.empty((len(images), in_h, in_w, 3), dtype=self.writer.dtype)
        tensor[...] = self.writer.pad  # the letterbox bars, already in the input's domain
        boxes = []
        for i, image in enumerate(images):
            box = Letterbox.fit(image.shape[0], image.shape[1], in_h, in_w)
            if (box.new_w, box.new_h) != (image.shape[1], image.shape[0]):
                image = cv2.resize(image, (box.new_w, box.new_h), interpolation=cv2.INTER_LINEAR)
            region = tensor[i, box.pad_top : box.pad_top + box.new_h, box.pad_left : box.pad_left + box.new_w]
            self.writer.write(image, region)
            boxes.append(box)
        if self.nchw:
            tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
        return Prepared(tensor, tuple(boxes))
