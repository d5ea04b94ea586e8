"""Synthetic shape scenes: the one renderer used by the dataset generator, the camera source and benchmarks.

Images are BGR uint8; boxes are float32 xyxy in pixels (the tight box of the full shape, clipped to the
image); class ids follow :data:`CLASS_NAMES`. Only numpy and OpenCV are used.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle")

_MIN_VISIBLE = 0.4  # objects more than 60% hidden (occluded or outside the image) are dropped from the truth
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SCALE = 1 << _SHIFT


def _shape_points(cls: int, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """Polygon (K,2) float64 of a square or triangle of the given size (side), centre and rotation."""
    if cls == 1:
        half = size / 2.0
        base = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    else:
        # equilateral triangle with side `size`, centred on its centroid
        r = size / math.sqrt(3.0)
        base = np.array(
            [[r * math.cos(a), r * math.sin(a)] for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        )
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    corners: np.ndarray = base @ rot.T + np.array([cx, cy])
    return corners


def _draw_shape(
    img: np.ndarray,
    cls: int,
    cx: float,
    cy: float,
    size: float,
    angle: float,
    color: tuple[int, ...],
    line: int = cv2.LINE_AA,
) -> np.ndarray:
    """Draw one filled shape; return its full (unclipped) tight box as float xyxy.

    Label maps are drawn with ``line=cv2.LINE_8`` so that edge pixels are not blended.
    """
    if cls == 0:
        r = size / 2.0
        center = (round(cx * _SCALE), round(cy * _SCALE))
        cv2.circle(img, center, round(r * _SCALE), color, -1, line, _SHIFT)
        return np.array([cx - r, cy - r, cx + r, cy + r])
    pts = _shape_points(cls, cx, cy, size, angle)
    cv2.fillPoly(img, [np.round(pts * _SCALE).astype(np.int32)], color, line, _SHIFT)
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def _shape_area(cls: int, size: float) -> float:
    if cls == 0:
        return math.pi * size * size / 4.0
    if cls == 1:
        return size * size
    return math.sqrt(3.0) / 4.0 * size * size


def _background(rng: np.random.Generator, width: int, height: int, clutter: int) -> np.ndarray:
    """Cluttered textured background: gradient + low-frequency noise texture + lines + soft blobs."""
    c0 = rng.uniform(0, 255, 3)
    c1 = rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)
    t = (math.cos(ang) * xs[None, :] + math.sin(ang) * ys[:, None]) * 0.5 + 0.5
    img = c0[None, None, :].astype(np.float32) * (1 - t[..., None]) + c1.astype(np.float32) * t[..., None]
    # low-frequency noise texture
    cells = int(rng.integers(4, 24))
    tex = rng.normal(0, rng.uniform(5, 35), (cells, max(2, cells * width // height), 3)).astype(np.float32)
    img += cv2.resize(tex, (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(clutter):
        kind = rng.integers(0, 3)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        if kind == 0:  # straight line
            p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(img, p1, p2, color, int(rng.integers(1, 4)), cv2.LINE_AA)
        elif kind == 1:  # elongated ellipse outline or fill (never circle-like)
            axes = (int(rng.integers(10, 80)), 0)
            axes = (axes[0], max(2, int(axes[0] * rng.uniform(0.1, 0.35))))
            center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            thick = -1 if rng.random() < 0.5 else int(rng.integers(1, 3))
            cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color, thick, cv2.LINE_AA)
        else:  # polyline scribble
            n = int(rng.integers(3, 7))
            pts = np.cumsum(rng.normal(0, 40, (n, 2)), axis=0) + rng.uniform([0, 0], [width, height])
            cv2.polylines(img, [pts.astype(np.int32)], False, color, int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def _contrast_color(rng: np.random.Generator, ref: np.ndarray, min_dist: float = 110.0) -> tuple[int, ...]:
    """A random BGR colour at least `min_dist` (Euclidean) from the reference colour, best of 30 tries."""
    best, best_d = None, -1.0
    for _ in range(30):
        c = rng.integers(0, 256, 3)
        d = float(np.linalg.norm(c.astype(np.float32) - ref))
        if d > best_d:
            best, best_d = c, d
        if d >= min_dist:
            break
    assert best is not None
    return tuple(int(v) for v in best)


def random_scene(
    rng: np.random.Generator, width: int = 640, height: int = 480
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one random scene.

    Returns (BGR uint8 image HxWx3, boxes float32 (N,4) xyxy pixels, class ids int64 (N,)).
    """
    img = _background(rng, width, height, int(rng.integers(4, 30)))
    owner = np.zeros((height, width), np.uint8)  # which object (1-based) owns each pixel, 0 = background
    n = int(rng.integers(2, 9))
    objs: list[tuple[int, np.ndarray, float]] = []
    for i in range(n):
        cls = int(rng.integers(0, 3))
        size = float(math.exp(rng.uniform(math.log(24), math.log(160))))
        margin = 0.25 * size
        cx = float(rng.uniform(-margin + size / 2, width + margin - size / 2))
        cy = float(rng.uniform(-margin + size / 2, height + margin - size / 2))
        angle = float(rng.uniform(0, 2 * math.pi))
        x0, y0 = max(0, int(cx - size / 2)), max(0, int(cy - size / 2))
        x1, y1 = min(width, int(cx + size / 2) + 1), min(height, int(cy + size / 2) + 1)
        ref = img[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0) if x1 > x0 and y1 > y0 else np.zeros(3)
        color = _contrast_color(rng, ref)
        box = _draw_shape(img, cls, cx, cy, size, angle, color)
        _draw_shape(owner, cls, cx, cy, size, angle, (i + 1,), cv2.LINE_8)
        objs.append((cls, box, _shape_area(cls, size)))
    # visibility from the final owner map
    counts = np.bincount(owner.ravel(), minlength=n + 1)
    boxes, classes = [], []
    for i, (cls, box, area) in enumerate(objs):
        if counts[i + 1] < _MIN_VISIBLE * area:
            continue
        b = np.clip(box, [0, 0, 0, 0], [width, height, width, height])
        if b[2] - b[0] < 4 or b[3] - b[1] < 4:
            continue
        boxes.append(b)
        classes.append(cls)
    # sensor effects
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    sigma = float(rng.uniform(0, 10))
    if sigma > 1:
        noise = rng.standard_normal(img.shape, dtype=np.float32)
        noise *= sigma
        noise += img
        img = np.clip(noise, 0, 255, out=noise).astype(np.uint8)
    out_boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return img, out_boxes, np.array(classes, np.int64)


def _bounce(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fold a linear trajectory into [lo, hi] (reflection off both ends)."""
    span = np.maximum(hi - lo, 1e-6)
    q = np.mod(p - lo, 2 * span)
    folded: np.ndarray = lo + np.where(q > span, 2 * span - q, q)
    return folded


class MovingScene:
    """A deterministic clip of shapes moving linearly and bouncing off the image edges.

    The background is rendered once; :meth:`render` only copies it and draws the shapes, so a frame
    costs well under a few milliseconds at 640x480.
    """

    def __init__(self, seed: int, width: int = 640, height: int = 480, n_objects: int = 4) -> None:
        self.seed = seed
        self.width = width
        self.height = height
        rng = np.random.default_rng(seed)
        bg = _background(rng, width, height, int(rng.integers(4, 12)))
        # precomputed static sensor noise, applied once
        noise = rng.normal(0, 4, bg.shape).astype(np.float32)
        self.background = np.clip(bg.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        ref = self.background.reshape(-1, 3).mean(axis=0)
        self.classes = rng.integers(0, 3, n_objects).astype(np.int64)
        self.sizes = rng.uniform(40, 120, n_objects)
        self.colors = [_contrast_color(rng, ref, 150.0) for _ in range(n_objects)]
        self.angle0 = rng.uniform(0, 2 * math.pi, n_objects)
        self.spin = rng.uniform(-0.08, 0.08, n_objects)  # radians per frame
        # the circumscribed radius keeps every rotation inside the frame
        self.radius = np.where(
            self.classes == 0,
            self.sizes / 2,
            np.where(self.classes == 1, self.sizes / math.sqrt(2), self.sizes / math.sqrt(3)),
        )
        self.lo = np.stack([self.radius, self.radius], axis=1)
        self.hi = np.stack([width - self.radius, height - self.radius], axis=1)
        self.p0 = rng.uniform(self.lo, self.hi)
        speed = rng.uniform(3, 12, n_objects)
        heading = rng.uniform(0, 2 * math.pi, n_objects)
        self.vel = np.stack([speed * np.cos(heading), speed * np.sin(heading)], axis=1)
        self._owner = np.zeros((height, width), np.uint8)

    def render_into(self, index: int, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Render frame `index` into `out` (HxWx3 uint8); return (boxes, class_ids)."""
        boxes, classes, _ = self.render_truth(index, out)
        return boxes, classes

    def positions(self, index: int) -> np.ndarray:
        """Every object's centre in frame `index` (n_objects, 2), visible or not."""
        pos: np.ndarray = _bounce(self.p0 + self.vel * index, self.lo, self.hi)
        return pos

    def render_truth(self, index: int, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render frame `index` into `out`; return the visible objects' (boxes, class_ids, ids).

        ``ids`` are the objects' identities (0 .. n_objects-1), the same in every frame: the ground truth
        for tracking. An object missing from a frame is occluded (more than 60% hidden by later ones)."""
        np.copyto(out, self.background)
        pos = _bounce(self.p0 + self.vel * index, self.lo, self.hi)
        angles = self.angle0 + self.spin * index
        owner = self._owner
        boxes = np.zeros((len(self.classes), 4))
        for i, cls in enumerate(self.classes):
            cx, cy = float(pos[i, 0]), float(pos[i, 1])
            boxes[i] = _draw_shape(
                out, int(cls), cx, cy, float(self.sizes[i]), float(angles[i]), self.colors[i]
            )
        # occlusion check only where boxes overlap (cheap in the common case)
        keep = np.ones(len(self.classes), bool)
        for i in range(len(self.classes)):
            later = boxes[i + 1 :]
            if later.size == 0:
                continue
            overlap = (
                (later[:, 0] < boxes[i, 2])
                & (later[:, 2] > boxes[i, 0])
                & (later[:, 1] < boxes[i, 3])
                & (later[:, 3] > boxes[i, 1])
            )
            if not overlap.any():
                continue
            x0, y0 = max(0, int(boxes[i, 0])), max(0, int(boxes[i, 1]))
            x1, y1 = min(self.width, int(boxes[i, 2]) + 2), min(self.height, int(boxes[i, 3]) + 2)
            region = owner[y0:y1, x0:x1]
            region.fill(0)
            for j in range(i, len(self.classes)):
                if j == i or overlap[j - i - 1]:
                    cx, cy = float(pos[j, 0]) - x0, float(pos[j, 1]) - y0
                    _draw_shape(
                        region,
                        int(self.classes[j]),
                        cx,
                        cy,
                        float(self.sizes[j]),
                        float(angles[j]),
                        (j + 1,),
                        cv2.LINE_8,
                    )
            visible = np.count_nonzero(region == i + 1)
            keep[i] = visible >= _MIN_VISIBLE * _shape_area(int(self.classes[i]), float(self.sizes[i]))
        boxes = np.clip(boxes, 0, [self.width, self.height, self.width, self.height])
        return boxes[keep].astype(np.float32), self.classes[keep].copy(), np.flatnonzero(keep)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame `index` as (BGR uint8 image, boxes float32 (N,4) xyxy, class ids int64 (N,))."""
        out = np.empty((self.height, self.width, 3), np.uint8)
        boxes, classes = self.render_into(index, out)
        return out, boxes, classes
