"""Letterbox resizing and input quantization into reused input tensors, with the exact inverse for boxes.

Quantization is fused with the /255 normalisation and the channel swap into one lookup table per model:
``lut[pixel]`` is the value the input tensor wants for a uint8 pixel, whatever its dtype, scale and zero
point. One ``np.take`` per image does normalise + quantize + BGR->RGB (:class:`InputWriter` has exact
shortcuts for the two common INT8 layouts). :class:`Preprocessor` is the one letterbox: it places each image
into a tensor it lends to the runtime and takes back after the inference (see its docstring for why that
is safe while the pipeline prepares the next batch).
"""

from __future__ import annotations

import functools
import platform
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

PAD_VALUE = 114  # Ultralytics' letterbox grey
# The letterbox resize. INTER_LINEAR is what Ultralytics' letterbox uses (tests/unit/test_ultralytics_compat.py
# holds x86 to it). OpenCV's aarch64 wheels run INTER_LINEAR through another HAL that rounds differently: the
# arm64 image's 640x480 -> 320x240 resize of the bundled test images differed from amd64's, and its boxes by
# up to 4 px. INTER_LINEAR_EXACT there gives the bytes x86's INTER_LINEAR gives for that geometry
# (containers/README.md, "arm64 runtime"), so an arm64 box sees what an x86 box sees.
RESIZE = cv2.INTER_LINEAR_EXACT if platform.machine() in {"aarch64", "arm64"} else cv2.INTER_LINEAR


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
        out: np.ndarray = np.subtract(xyxy, self._offset, dtype=np.float32)
        np.divide(out, self._gain, out=out)
        np.maximum(0, out, out=out)
        np.minimum(out, self._limit, out=out)
        return out

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


# --------------------------------------------------------------------------- the input tensors


class _Slot:
    """One reusable input tensor, sized for the largest batch it has held (a batch of n uses the first n)."""

    __slots__ = ("bars", "canvas", "lent", "tensor", "ticket")

    def __init__(self, capacity: int, in_hw: tuple[int, int], dtype: np.dtype, nchw: bool) -> None:
        in_h, in_w = in_hw
        self.canvas = np.empty((capacity, in_h, in_w, 3), dtype)  # where images are letterboxed (HWC)
        self.tensor = np.empty((capacity, 3, in_h, in_w), dtype) if nchw else self.canvas
        # bars[i]: the letterbox whose grey bars canvas[i] holds (None: not filled yet). Only the pad fill
        # writes outside an image's region, so they stay valid until the geometry at index i changes.
        self.bars: list[Letterbox | None] = [None] * capacity
        self.ticket = 0  # bumped on each loan: a Prepared from an earlier loan no longer owns the slot
        self.lent = False


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch ready for the runtime, with each image's letterbox to map boxes back.

    ``tensor`` is lent by the :class:`Preprocessor` that made it, which reuses it once ``Detector.infer``
    on this batch has returned: read it before that, and infer each Prepared once."""

    tensor: np.ndarray
    boxes: tuple[Letterbox, ...]
    slot: _Slot | None = field(default=None, repr=False, compare=False)
    ticket: int = field(default=0, repr=False, compare=False)


class Preprocessor:
    """Letterboxes a batch of BGR uint8 images into the model's input tensor (NHWC, or NCHW by a copy).

    The tensors are reused: a new one per batch cost an allocation, a fill of every pixel with the pad
    value, and for NCHW a second allocation for the transposed copy. Ownership is explicit, because
    ``prepare`` (the pipeline's cpu thread) overlaps ``infer`` (its infer thread): up to three batches are
    in flight there (one in the runtime, one queued, one being prepared), so a fixed ring of two tensors
    would overwrite one the runtime is reading.

    - :meth:`prepare` takes a free slot (or makes one) and lends it to the :class:`Prepared` it returns;
    - :meth:`release`, called by ``Detector.infer`` once ``Backend.run`` has returned, gives it back. The
      runtimes are done with their input by then: LiteRT's ``set_tensor`` copies it, ONNX Runtime's ``run``
      is synchronous, TensorRT's backend synchronises its stream before returning;
    - a Prepared that never reaches ``infer`` keeps its slot, and the slot goes with it to the collector.

    So a slot is in the free list or lent to exactly one Prepared, and no two batches ever share a tensor,
    however deep the pipeline. Thread-safe: the free list is behind a lock.
    """

    MAX_FREE = 4  # slots kept for reuse; more in flight than that are simply dropped when released

    def __init__(self, input_hw: tuple[int, int], writer: InputWriter, *, nchw: bool) -> None:
        self.input_hw, self.writer, self.nchw = input_hw, writer, nchw
        self._free: list[_Slot] = []
        self._lock = threading.Lock()

    def prepare(self, images: Sequence[np.ndarray]) -> Prepared:
        in_h, in_w = self.input_hw
        n = len(images)
        slot = self._take(n)
        writer = self.writer
        boxes = []
        for i, image in enumerate(images):
            box = Letterbox.fit(image.shape[0], image.shape[1], in_h, in_w)
            plane = slot.canvas[i]
            if slot.bars[i] is not box:  # fit() is cached: the same geometry is the same object
                plane[...] = writer.pad  # the letterbox bars, already in the input's domain
                slot.bars[i] = box
            if (box.new_w, box.new_h) != (image.shape[1], image.shape[0]):
                image = cv2.resize(image, (box.new_w, box.new_h), interpolation=RESIZE)
            region = plane[box.pad_top : box.pad_top + box.new_h, box.pad_left : box.pad_left + box.new_w]
            writer.write(image, region)  # every pixel of the region: nothing of the last batch remains
            boxes.append(box)
        tensor = slot.tensor[:n]  # a prefix along the batch axis: still C-contiguous
        if self.nchw:
            np.copyto(tensor, slot.canvas[:n].transpose(0, 3, 1, 2))
        return Prepared(tensor, tuple(boxes), slot, slot.ticket)

    def check(self, prepared: Prepared) -> None:
        """Raise if the prepared tensor was overwritten (its slot released, then lent to another batch)."""
        slot = prepared.slot
        if slot is not None and slot.ticket != prepared.ticket:
            raise RuntimeError(
                "this Prepared was already inferred and its tensor reused: infer each one once"
            )

    def release(self, prepared: Prepared) -> None:
        """Give the prepared tensor back for reuse (the runtime is done with it). Idempotent."""
        slot = prepared.slot
        if slot is None:
            return
        with self._lock:
            if not slot.lent or slot.ticket != prepared.ticket:
                return
            slot.lent = False
            if len(self._free) < self.MAX_FREE:
                self._free.append(slot)

    def _take(self, n: int) -> _Slot:
        with self._lock:
            slot = next((s for s in reversed(self._free) if len(s.canvas) >= n), None)
            if slot is not None:
                self._free.remove(slot)
            elif self._free:
                self._free.pop(0)  # too small for this batch: replaced by a larger one
        if slot is None:
            slot = _Slot(n, self.input_hw, self.writer.dtype, self.nchw)
        slot.ticket += 1
        slot.lent = True
        return slot
