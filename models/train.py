"""Train a shapes detector on the pre-generated synthetic split (time-budgeted, CPU).

Assignment: FCOS-style centre sampling (anchor inside the box and within 2.5 strides of its centre) with
scale ranges per level; an anchor claimed by several boxes takes the smallest. Losses: BCE against an
IoU**2 soft target for classes (modulated by |target - p|^2 on background anchors only), GIoU for boxes.
AdamW, cosine learning rate over the wall-clock budget, EMA of the weights (the EMA is what gets saved).

    python models/train.py --variant shapes-s --minutes 28
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import architecture as A
import numpy as np
import tensorflow as tf

WORK = Path(os.environ.get("SHAPES_WORK", Path(__file__).resolve().parent / "work"))
IMGSZ = 320
NC = 3
# object size ranges (max side, input pixels) per level; overlapping so mid sizes train two levels
SIZE_RANGES = ((0.0, 40.0), (28.0, 88.0), (64.0, 1e9))
RADIUS = 2.5


def assign(gt_boxes: tf.Tensor, gt_cls: tf.Tensor, anchors: tf.Tensor, strides: tf.Tensor, levels: tf.Tensor):
    """gt_boxes [B,M,4] xyxy px, gt_cls [B,M] (-1 = pad) -> fg [B,N], tgt_box [B,N,4], tgt_cls [B,N]."""
    valid = gt_cls >= 0  # [B,M]
    ax = anchors[None, :, None, 0]
    ay = anchors[None, :, None, 1]  # [1,N,1]
    x1, y1, x2, y2 = (gt_boxes[:, None, :, i] for i in range(4))  # [B,1,M]
    inside = (ax > x1) & (ax < x2) & (ay > y1) & (ay < y2)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    r = RADIUS * strides[None, :, None]
    near = (tf.abs(ax - cx) < r) & (tf.abs(ay - cy) < r)
    size = tf.maximum(x2 - x1, y2 - y1)
    lo = tf.gather(tf.constant([s[0] for s in SIZE_RANGES]), levels)[None, :, None]
    hi = tf.gather(tf.constant([s[1] for s in SIZE_RANGES]), levels)[None, :, None]
    in_range = (size >= lo) & (size <= hi)
    cand = inside & near & in_range & valid[:, None, :]  # [B,N,M]
    area = (x2 - x1) * (y2 - y1)
    cost = tf.where(cand, area, tf.fill(tf.shape(cand), 1e12))
    best = tf.argmin(cost, axis=-1, output_type=tf.int32)  # [B,N]
    fg = tf.reduce_any(cand, axis=-1)
    tgt_box = tf.gather(gt_boxes, best, batch_dims=1)
    tgt_cls = tf.gather(gt_cls, best, batch_dims=1)
    return fg, tgt_box, tgt_cls


def decode_xyxy(raw_box: tf.Tensor, anchors: tf.Tensor, strides: tf.Tensor) -> tf.Tensor:
    """Same decode as the exported graph, in input pixels."""
    d = tf.sigmoid(raw_box) * (strides * A.MAX_DIST_STRIDES)[None, :, None]
    return tf.concat([anchors[None] - d[..., :2], anchors[None] + d[..., 2:]], axis=-1)


def iou_giou(a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    ix1 = tf.maximum(a[..., 0], b[..., 0])
    iy1 = tf.maximum(a[..., 1], b[..., 1])
    ix2 = tf.minimum(a[..., 2], b[..., 2])
    iy2 = tf.minimum(a[..., 3], b[..., 3])
    inter = tf.maximum(ix2 - ix1, 0) * tf.maximum(iy2 - iy1, 0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    cw = tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0])
    ch = tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])
    c_area = cw * ch + 1e-7
    return iou, iou - (c_area - union) / c_area


def widen_into(narrow: Any, wide: Any) -> None:
    """Copy trained weights into a model whose class branch has more channels, keeping its function.

    Net2Net-style: each weight is copied into the leading corner of the wider tensor; the extra output
    channels keep their fresh initialisation, and the kernel rows that read extra input channels are
    zeroed, so the new channels contribute nothing until training moves those rows.
    """
    for src, dst in zip(narrow.layers, wide.layers, strict=True):
        for ws, wd in zip(src.weights, dst.weights, strict=True):
            old, new = ws.numpy(), wd.numpy()
            if old.shape != new.shape:
                if new.ndim == 4:
                    new[:, :, old.shape[2] :, :] = 0.0
                new[tuple(slice(0, n) for n in old.shape)] = old
                old = new
            wd.assign(old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="shapes-s")
    ap.add_argument("--minutes", type=float, default=28.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = time budget)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from these weights (.weights.h5), e.g. to continue")
    ap.add_argument(
        "--init-head-cls",
        type=int,
        default=0,
        help="class-branch width of the --init weights when narrower than the variant's (widen them)",
    )
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--xla", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--bg-gamma",
        type=float,
        default=2.0,
        help="focal exponent on background anchors (lower = harder on FPs)",
    )
    a = ap.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(a.seed)

    images = np.load(WORK / "train" / "images.npy", mmap_mode="r")
    boxes = np.load(WORK / "train" / "boxes.npy")
    classes = np.load(WORK / "train" / "classes.npy")
    n_img = len(boxes)
    model = A.build_raw_model(a.variant, IMGSZ, NC)
    if a.init and a.init_head_cls:
        narrow = A.build_raw_model(
            dataclasses.replace(A.VARIANTS[a.variant], head_cls=a.init_head_cls), IMGSZ, NC
        )
        narrow.load_weights(a.init)
        widen_into(narrow, model)
        wide = A.VARIANTS[a.variant].head_cls
        print(f"initialised from {a.init} (class branch widened {a.init_head_cls} -> {wide})", flush=True)
    elif a.init:
        model.load_weights(a.init)
        print(f"initialised from {a.init}", flush=True)
    print(f"{a.variant}: {model.count_params()} params, {A.count_flops(model):.2f} GFLOPs", flush=True)

    pts, strd = A.anchor_grid(IMGSZ)
    levels = np.concatenate([np.full((IMGSZ // s) ** 2, i, np.int32) for i, s in enumerate(A.STRIDES)])
    anchors_t, strides_t, levels_t = tf.constant(pts), tf.constant(strd), tf.constant(levels)

    opt = tf.keras.optimizers.AdamW(learning_rate=a.lr, weight_decay=5e-4, clipnorm=10.0)
    ema_vars = [tf.Variable(v.numpy(), trainable=False) for v in model.weights]
    ema_decay = tf.Variable(0.0, trainable=False)

    @tf.function(jit_compile=a.xla, reduce_retracing=True)
    def train_step(img_u8: tf.Tensor, gtb: tf.Tensor, gtc: tf.Tensor) -> tuple[tf.Tensor, ...]:
        x = tf.cast(img_u8, tf.float32) / 255.0
        fg, tbox, tcls = assign(gtb, gtc, anchors_t, strides_t, levels_t)
        fgf = tf.cast(fg, tf.float32)
        num_pos = tf.maximum(tf.reduce_sum(fgf), 1.0)
        with tf.GradientTape() as tape:
            raw = model(x, training=True)
            pbox = decode_xyxy(raw[..., :4], anchors_t, strides_t)
            iou, giou = iou_giou(pbox, tbox)
            logits = raw[..., 4:]
            # IoU-aware quality target, squared: a score of 0.25 (the usual conf threshold) then means a box
            # expected to overlap its object by IoU 0.5, so off-centre anchors' sloppy boxes fall below it.
            q = tf.square(tf.stop_gradient(tf.maximum(iou, 0.0))) * fgf
            target = tf.one_hot(tf.maximum(tcls, 0), NC) * q[..., None]
            p = tf.sigmoid(logits)
            bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
            # Focal modulation only on background anchors: at a positive anchor the wrong classes must keep
            # their full gradient, or the head learns "object here" long before "which shape" (run 1-2).
            weight = tf.where(fg[..., None], 1.0, tf.pow(tf.abs(p - target), a.bg_gamma))
            cls_loss = tf.reduce_sum(bce * weight) / num_pos
            box_loss = tf.reduce_sum((1.0 - giou) * fgf) / num_pos
            loss = cls_loss + 2.5 * box_loss
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        for e, v in zip(ema_vars, model.weights, strict=True):
            if "float" in str(v.dtype):
                e.assign(ema_decay * e + (1.0 - ema_decay) * v)
            else:
                e.assign(v)
        return loss, cls_loss, box_loss, num_pos / tf.cast(tf.shape(x)[0], tf.float32)

    out_dir = WORK / "ckpt"
    out_dir.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        live = [v.numpy() for v in model.weights]
        for v, e in zip(model.weights, ema_vars, strict=True):
            v.assign(e)
        model.save_weights(out_dir / f"{a.variant}.weights.h5")
        for v, w in zip(model.weights, live, strict=True):
            v.assign(w)

    rng = np.random.default_rng(a.seed)
    budget = a.minutes * 60.0
    t0 = time.time()
    step, last_save, last_log = 0, t0, t0
    warmup = a.warmup
    hist: list[np.ndarray] = []
    while True:
        el = time.time() - t0
        if (a.max_steps and step >= a.max_steps) or (not a.max_steps and el >= budget):
            break
        frac = min(el / budget, 1.0) if not a.max_steps else step / a.max_steps
        lr = a.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * frac)))
        if step < warmup:
            lr *= (step + 1) / warmup
        opt.learning_rate.assign(lr)
        ema_decay.assign(0.9995 * (1 - np.exp(-step / 400.0)))
        idx = np.sort(rng.choice(n_img, a.batch, replace=False))
        img = np.asarray(images[idx])
        gtb = boxes[idx].copy()
        gtc = classes[idx]
        # flips (all three classes are flip-invariant as classes)
        if rng.random() < 0.5:
            img = img[:, :, ::-1]
            gtb[..., [0, 2]] = IMGSZ - gtb[..., [2, 0]]
        if rng.random() < 0.5:
            img = img[:, ::-1]
            gtb[..., [1, 3]] = IMGSZ - gtb[..., [3, 1]]
        res = train_step(np.ascontiguousarray(img), gtb, gtc)
        hist.append(np.array([float(r) for r in res]))
        step += 1
        now = time.time()
        if now - last_log > float(os.environ.get("LOG_EVERY", "30")):
            m = np.mean(hist[-50:], axis=0)
            print(
                f"step {step} t={el / 60:.1f}m lr={lr:.2e} loss={m[0]:.3f} cls={m[1]:.3f} box={m[2]:.3f} "
                f"pos/img={m[3]:.1f} {step / el:.2f} it/s",
                flush=True,
            )
            last_log = now
        if now - last_save > 180:
            save()
            last_save = now
    save()
    print(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
