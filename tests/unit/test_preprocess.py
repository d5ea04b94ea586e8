"""Letterbox geometry and its inverse, input quantization lookup tables, the reused input tensors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeinfer.detect.preprocess import (
    PAD_VALUE,
    InputWriter,
    Letterbox,
    Prepared,
    Preprocessor,
    dequantize,
    input_lut,
    quantize_threshold,
)


def canvases(nchw: bool = False) -> Preprocessor:
    """The letterbox alone: uint8 pixels as they are (the identity table), BGR kept."""
    return Preprocessor((320, 320), InputWriter(np.dtype(np.uint8), 1 / 255, 0, rgb=False), nchw=nchw)


@given(
    h=st.integers(16, 2000),
    w=st.integers(16, 2000),
    x1=st.floats(0, 0.9),
    y1=st.floats(0, 0.9),
    bw=st.floats(0.01, 0.1),
    bh=st.floats(0.01, 0.1),
)
def test_letterbox_round_trip(h, w, x1, y1, bw, bh):
    box = Letterbox.fit(h, w, 320, 320)
    original = np.array([[x1 * w, y1 * h, (x1 + bw) * w, (y1 + bh) * h]], np.float32)
    back = box.to_original(box.to_input(original))
    np.testing.assert_allclose(back, original, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    ("h", "w", "pad_top", "pad_left"), [(480, 640, 40, 0), (640, 480, 0, 40), (320, 320, 0, 0)]
)
def test_letterbox_pads_with_grey_around_the_centred_image(h, w, pad_top, pad_left):
    image = np.full((h, w, 3), 7, np.uint8)
    prepared = canvases().prepare([image])
    canvas, box = prepared.tensor[0], prepared.boxes[0]
    assert (box.pad_top, box.pad_left) == (pad_top, pad_left)
    assert canvas.shape == (320, 320, 3)
    if pad_top:
        assert (canvas[:pad_top] == PAD_VALUE).all()
        assert (canvas[-pad_top:] == PAD_VALUE).all()
    if pad_left:
        assert (canvas[:, :pad_left] == PAD_VALUE).all()
    assert (canvas[pad_top : 320 - pad_top, pad_left : 320 - pad_left] == 7).all()


def test_uint8_input_with_unit_scale_is_the_identity():
    lut = input_lut(np.dtype(np.uint8), 1 / 255, 0)
    assert lut.dtype == np.uint8
    np.testing.assert_array_equal(lut, np.arange(256))


def test_int8_input_shifts_by_the_zero_point():
    lut = input_lut(np.dtype(np.int8), 1 / 255, -128)
    assert lut[0] == -128 and lut[255] == 127 and lut[128] == 0


def test_float_input_is_normalised():
    lut = input_lut(np.dtype(np.float32), 0.0, 0)
    assert lut[0] == 0.0 and lut[255] == pytest.approx(1.0)


def test_integer_input_without_scale_is_refused():
    with pytest.raises(ValueError, match="quantization"):
        input_lut(np.dtype(np.int8), 0.0, 0)


@pytest.mark.parametrize("conf", [0.001, 0.25, 0.5, 0.9])
@pytest.mark.parametrize(
    ("dtype", "scale", "zero"), [(np.int8, 1 / 255, -128), (np.uint8, 0.0039, 3), (np.int8, 0.0078, 0)]
)
def test_quantized_threshold_is_exact(conf, dtype, scale, zero):
    q = quantize_threshold(conf, scale, zero, np.dtype(dtype))
    values = np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1).astype(dtype)
    passes = dequantize(values, scale, zero) >= np.float32(conf) - 1e-6
    assert (values >= q).tolist() == passes.tolist()


@pytest.mark.parametrize(
    ("dtype", "scale", "zero", "mode"),
    [
        (np.uint8, 1 / 255, 0, "copy"),
        (np.int8, 1 / 255, -128, "xor"),
        (np.float32, 0.0, 0, "lut"),
        (np.int8, 0.02, 3, "lut"),
        (np.uint8, 0.0078, 128, "lut"),
    ],
)
@pytest.mark.parametrize("rgb", [True, False])
def test_input_writer_shortcuts_equal_the_lookup_table(dtype, scale, zero, mode, rgb):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (240, 280, 3), dtype=np.uint8)
    writer = InputWriter(np.dtype(dtype), scale, zero, rgb=rgb)
    assert writer.mode == mode
    tensor = np.full((320, 320, 3), writer.pad, dtype=writer.dtype)
    writer.write(image, tensor[40:280, 20:300])  # a letterbox region: a strided view
    canvas = np.full((320, 320, 3), PAD_VALUE, np.uint8)
    canvas[40:280, 20:300] = image
    expected = input_lut(np.dtype(dtype), scale, zero)[canvas[..., ::-1] if rgb else canvas]
    np.testing.assert_array_equal(tensor, expected)


def test_fit_is_cached_and_its_rows_are_read_only():
    box = Letterbox.fit(480, 640, 320, 320)
    assert Letterbox.fit(480, 640, 320, 320) is box
    assert box == Letterbox(box.scale, box.pad_left, box.pad_top, box.new_w, box.new_h, 640, 480)
    with pytest.raises(ValueError, match="read-only"):
        box._offset[0] = 1


# --------------------------------------------------------------------------- the reused input tensors


def test_a_lent_tensor_is_never_handed_out_again_until_released():
    pre = canvases()
    image = np.full((480, 640, 3), 9, np.uint8)
    in_flight = [pre.prepare([image]) for _ in range(3)]  # in the runtime, queued, being prepared
    buffers = {p.tensor.__array_interface__["data"][0] for p in in_flight}
    assert len(buffers) == 3
    pre.release(in_flight[0])
    again = pre.prepare([image])
    assert again.tensor.__array_interface__["data"][0] == in_flight[0].tensor.__array_interface__["data"][0]
    assert again.tensor.__array_interface__["data"][0] not in {
        p.tensor.__array_interface__["data"][0] for p in in_flight[1:]
    }


def test_a_batch_uses_a_larger_free_tensor_and_a_larger_batch_replaces_a_small_one():
    pre = canvases()
    image = np.full((480, 640, 3), 9, np.uint8)
    four = pre.prepare([image] * 4)
    pre.release(four)
    one = pre.prepare([image])  # the first image of the 4-slot: a prefix view
    assert one.tensor.shape == (1, 320, 320, 3) and one.tensor.base is four.tensor.base
    pre.release(one)
    assert pre.prepare([image] * 5).tensor.shape == (5, 320, 320, 3)


def test_release_is_idempotent_and_a_stale_prepared_is_refused():
    pre = canvases()
    image = np.full((480, 640, 3), 9, np.uint8)
    first = pre.prepare([image])
    pre.release(first)
    pre.release(first)  # twice: still one free slot, not two
    pre.check(first)  # released but not reused: its tensor is intact
    second, third = pre.prepare([image]), pre.prepare([image])
    assert second.tensor.base is first.tensor.base and third.tensor.base is not first.tensor.base
    with pytest.raises(RuntimeError, match="infer each one once"):
        pre.check(first)
    pre.release(first)  # a stale release does not free the slot second holds
    assert pre.prepare([image]).tensor.base is not second.tensor.base
    pre.check(Prepared(np.zeros((1, 320, 320, 3), np.uint8), ()))  # not from a preprocessor: fine


def test_nchw_tensor_is_the_transposed_canvas():
    image = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    nhwc, nchw = canvases().prepare([image]).tensor, canvases(nchw=True).prepare([image]).tensor
    assert nchw.shape == (1, 3, 320, 320) and nchw.flags.c_contiguous
    np.testing.assert_array_equal(nchw, nhwc.transpose(0, 3, 1, 2))
