"""Make tiny real Ultralytics exports (ONNX, TFLite/LiteRT) and Ultralytics' own predictions on them.

Run inside a venv that has ultralytics + its export dependencies (never in the project's .venv):

    YOLO_OFFLINE=1 .venv-ul/bin/python models/ultralytics_fixtures/generate.py --flavor litert
    YOLO_OFFLINE=1 .venv-ul-old/bin/python models/ultralytics_fixtures/generate.py --flavor onnx2tf

Everything is offline: the model is built from a YAML (random init), trained for a few epochs on
synthetic scenes from :mod:`edgeinfer.synthetic`, calibrated on the same local images. See README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # edgeinfer.synthetic (numpy + OpenCV only)

WORK = ROOT / "models" / "work" / "ultralytics_fixtures"  # git-ignored
FIXTURES = ROOT / "tests" / "fixtures" / "ultralytics"
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(WORK / "config"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edgeinfer.synthetic import CLASS_NAMES, random_scene  # noqa: E402

IMGSZ = 64
REUSE = False
NAMES = list(CLASS_NAMES)  # circle, square, triangle
# conf/iou/max_det used for the recorded predictions (the tests open the detector with the same values).
PREDICT = {"conf": 0.05, "iou": 0.45, "max_det": 20}
# Test images: non-square on purpose, so the letterbox padding is exercised both ways.
TEST_IMAGES = {
    "scene_160x120.png": (160, 120, 101),
    "scene_90x150.png": (90, 150, 102),
    "scene_128.png": (128, 128, 103),
}


def torchvision_nms_shim() -> None:
    """PyPI's torchvision wheels are CUDA builds whose _C.so cannot load next to the CPU torch wheel; torchvision
    then fails at import (its meta registrations need torchvision::nms). Ultralytics only needs nms, so define
    nms/qnms in Python (greedy NMS, same semantics as the C++ kernel) before torchvision is imported."""
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.submodule_search_locations is None:
        return
    so = next(Path(spec.submodule_search_locations[0]).glob("_C*.so"), None)
    try:
        if so is not None:
            torch.ops.load_library(str(so))
            return
    except OSError:
        pass

    def nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        order = scores.argsort(descending=True)
        boxes = dets[order]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        suppressed = torch.zeros(len(order), dtype=torch.bool)
        keep = []
        for i in range(len(order)):
            if suppressed[i]:
                continue
            keep.append(i)
            lt = torch.maximum(boxes[i, :2], boxes[i + 1 :, :2])
            rb = torch.minimum(boxes[i, 2:], boxes[i + 1 :, 2:])
            inter = (rb - lt).clamp(min=0).prod(dim=1)
            iou = inter / (area[i] + area[i + 1 :] - inter)
            suppressed[i + 1 :] |= iou > iou_threshold
        return order[torch.tensor(keep, dtype=torch.long)]

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", nms, "CPU")
    lib.impl("qnms", nms, "CPU")
    torchvision_nms_shim.lib = lib  # keep the library alive
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True  # torchvision.ops.nms checks this before calling the op


def offline_setup() -> None:
    """No network: a local font where Ultralytics would download Arial.ttf, and settings with sync off."""
    cfg = Path(os.environ["YOLO_CONFIG_DIR"])
    cfg.mkdir(parents=True, exist_ok=True)
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (cfg / name).exists():
            shutil.copy(dejavu, cfg / name)
    from ultralytics import settings

    settings.update({"sync": False, "hub": False} if "hub" in settings else {"sync": False})


def make_dataset(root: Path, n_train: int = 96, n_val: int = 16) -> Path:
    """YOLO-format dataset of synthetic scenes; returns the dataset YAML."""
    rng = np.random.default_rng(7)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = (128, 96) if i % 2 else (96, 128)
            img, boxes, classes = random_scene(rng, w, h)
            cv2.imwrite(str(root / "images" / split / f"{i:04d}.png"), img)
            lines = []
            for (x0, y0, x1, y1), c in zip(boxes, classes, strict=True):
                cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
                lines.append(f"{int(c)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    yaml_path = root / "shapes.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(NAMES))
    yaml_path.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return yaml_path


def tiny_yaml(base: str, out: Path) -> Path:
    """A copy of an Ultralytics model YAML with nc=3 and one tiny scale (width 0.0625, depth 0.33)."""
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    cfg = yaml_model_load(base)
    cfg = {k: v for k, v in cfg.items() if k not in ("yaml_file", "scale", "ch")}
    cfg["nc"] = len(NAMES)
    cfg["scales"] = {"n": [0.33, 0.0625, 256]}
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def train(model_yaml: Path, data: Path, name: str, epochs: int) -> Path:
    from ultralytics import YOLO

    weights = WORK / f"{name}.pt"
    if REUSE and weights.exists():
        return weights
    model = YOLO(str(model_yaml), task="detect")
    model.train(
        data=str(data),
        epochs=epochs,
        imgsz=IMGSZ,
        optimizer="SGD",
        lr0=0.02,
        warmup_epochs=1,
        batch=16,
        workers=0,
        device="cpu",
        plots=False,
        val=False,
        amp=False,
        project=str(WORK / "runs"),
        name=name,
        exist_ok=True,
        seed=0,
        deterministic=True,
        verbose=False,
    )
    shutil.copy(Path(model.trainer.save_dir) / "weights" / "last.pt", weights)
    lift_scores(weights, data.parent / "images" / "val")
    return weights


def lift_scores(weights: Path, val_dir: Path, target: float = 0.8) -> None:
    """A few CPU epochs on 96 images leave every class score below ~0.01, so nothing survives a usable conf and
    an int8 output rounds all scores to zero. Add one constant to the class-logit biases of the head (so the
    best score on the val images becomes ``target``): same boxes and ranking, scores spread over (0, target]."""
    import math

    from ultralytics import YOLO

    model = YOLO(str(weights))
    images = [cv2.imread(str(p)) for p in sorted(val_dir.glob("*.png"))]
    best = max(
        float(r.boxes.conf.max()) if len(r.boxes) else 0.0
        for r in model.predict(images, imgsz=IMGSZ, conf=1e-6, max_det=1, verbose=False, device="cpu")
    )
    lift = math.log(target / (1 - target)) - math.log(best / (1 - best))
    head = model.model.model[-1]
    for branch in ("cv3", "one2one_cv3"):
        for seq in getattr(head, branch, None) or []:
            last = seq[-1]
            last.bias.data += lift
    print(
        f"score lift {weights.name}: best {best:.5f} -> {target} (+{lift:.3f} on the class biases)",
        flush=True,
    )
    model.save(str(weights))


def test_images() -> dict[str, np.ndarray]:
    out = {}
    for fname, (w, h, seed) in TEST_IMAGES.items():
        path = FIXTURES / "images" / fname
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            img, _, _ = random_scene(np.random.default_rng(seed), w, h)
            cv2.imwrite(str(path), img)
        out[fname] = cv2.imread(str(path))  # BGR, as edgeinfer's frames
    return out


def predictions(path: Path, images: dict[str, np.ndarray]) -> dict[str, dict[str, list]]:
    """Ultralytics' own predictions for the exported file (boxes xyxy in original-image pixels)."""
    from ultralytics import YOLO

    model = YOLO(str(path), task="detect")
    result = {}
    for name, img in images.items():
        r = model.predict(img, imgsz=IMGSZ, verbose=False, device="cpu", **PREDICT)[0]
        result[name] = {
            "boxes": [[round(float(v), 3) for v in b] for b in r.boxes.xyxy.cpu().numpy()],
            "classes": [int(c) for c in r.boxes.cls.cpu().numpy()],
            "scores": [round(float(s), 5) for s in r.boxes.conf.cpu().numpy()],
        }
    return result


def tensor_details(path: Path) -> dict[str, object]:
    """Input/output tensors as the exporter left them (for the README and the fixture JSON)."""
    if path.suffix == ".onnx":
        import onnx

        m = onnx.load(str(path))

        def dims(t):
            return [d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim]

        etype = onnx.helper.tensor_dtype_to_np_dtype
        return {
            "inputs": [
                {"name": t.name, "shape": dims(t), "dtype": str(etype(t.type.tensor_type.elem_type))}
                for t in m.graph.input
            ],
            "outputs": [
                {"name": t.name, "shape": dims(t), "dtype": str(etype(t.type.tensor_type.elem_type))}
                for t in m.graph.output
            ],
            "opset": m.opset_import[0].version,
            "metadata_props": {p.key: p.value for p in m.metadata_props},
        }
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite.python.interpreter import Interpreter
    it = Interpreter(model_path=str(path))

    def desc(d):
        scale, zp = d["quantization"]
        return {
            "name": d["name"],
            "shape": [int(x) for x in d["shape_signature"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": {"scale": float(scale), "zero_point": int(zp)} if scale else None,
        }

    return {
        "inputs": [desc(d) for d in it.get_input_details()],
        "outputs": [desc(d) for d in it.get_output_details()],
    }


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in (
        "ultralytics",
        "torch",
        "onnx",
        "onnxruntime",
        "onnxslim",
        "litert-torch",
        "ai-edge-litert",
        "ai-edge-quantizer",
        "tensorflow-cpu",
        "tensorflow",
        "tf_keras",
        "onnx2tf",
        "numpy",
    ):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def export(weights: Path, dest_dir: Path, rename: str | None = None, **kwargs) -> list[Path]:
    """Export, copy the file(s) of interest into dest_dir and return their fixture paths.

    onnx2tf exports (Ultralytics < 8.4.83, format=tflite) write a ``*_saved_model/`` folder holding every
    .tflite variant; all of them are copied (float16 and oversized ones are dropped later). ``rename`` replaces
    the weights' stem in the copied names (e.g. yolo11t -> yolo11t_dynamic)."""
    from ultralytics import YOLO

    out = Path(YOLO(str(weights)).export(imgsz=IMGSZ, device="cpu", **kwargs))
    dest_dir.mkdir(parents=True, exist_ok=True)
    if out.is_dir():
        files = sorted(out.glob("*.tflite"))
    elif out.parent.name.endswith("_saved_model"):
        files = sorted(out.parent.glob("*.tflite"))
    else:
        files = [out]
    copied = []
    for f in files:
        target = dest_dir / (f.name.replace(weights.stem, rename, 1) if rename else f.name)
        shutil.copy(f, target)
        copied.append(target)
    return copied


def onnx2tf_calibration_stub() -> None:
    """Ultralytics' onnx2tf path downloads onnx2tf's sample calibration file into the working directory when it is
    missing (even when the calibration images come from ``data=``). Leave a local one of synthetic scenes there."""
    name = Path("calibration_image_sample_data_20x128x128x3_float32.npy")
    if not name.exists():
        rng = np.random.default_rng(11)
        imgs = [cv2.resize(random_scene(rng, 128, 128)[0], (128, 128))[..., ::-1] for _ in range(20)]
        np.save(name, (np.stack(imgs).astype(np.float32) / 255.0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flavor", choices=["litert", "onnx2tf"], required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--reuse-weights", action="store_true", help="skip training when WORK/<name>.pt exists"
    )
    args = parser.parse_args()
    global REUSE
    REUSE = args.reuse_weights
    WORK.mkdir(parents=True, exist_ok=True)
    torchvision_nms_shim()
    offline_setup()
    os.chdir(WORK)  # Ultralytics and onnx2tf leave files in the working directory
    onnx2tf_calibration_stub()
    import ultralytics

    version = ultralytics.__version__
    data = make_dataset(WORK / "data")
    dest = FIXTURES / f"ultralytics-{version}"
    if dest.exists():
        shutil.rmtree(dest)
    images = test_images()
    calib = {"data": str(data), "fraction": 1.0}

    jobs: list[tuple[str, dict, str | None, dict]] = []  # (weights name, export kwargs, rename, expected)
    raw = {"output_layout": "yolov8"}
    if args.flavor == "litert":
        y11 = train(tiny_yaml("yolo11n.yaml", WORK / "yolo11t.yaml"), data, "yolo11t", args.epochs)
        y26 = train(tiny_yaml("yolo26n.yaml", WORK / "yolo26t.yaml"), data, "yolo26t", args.epochs)
        jobs += [
            (y11, {"format": "onnx"}, None, {**raw, "input_layout": "NCHW", "normalized_boxes": False}),
            (
                y11,
                {"format": "onnx", "dynamic": True},
                "yolo11t_dynamic",
                {**raw, "input_layout": "NCHW", "normalized_boxes": False},
            ),
            (
                y11,
                {"format": "onnx", "nms": True},
                "yolo11t_nms",
                {"output_layout": "end2end", "input_layout": "NCHW", "normalized_boxes": False},
            ),
            (y26, {"format": "onnx"}, None, {**raw, "input_layout": "NCHW", "normalized_boxes": False}),
            (y11, {"format": "tflite"}, None, {**raw, "input_layout": "NCHW", "normalized_boxes": True}),
            (
                y11,
                {"format": "tflite", "int8": True, **calib},
                None,
                {**raw, "input_layout": "NCHW", "normalized_boxes": True},
            ),
            (
                y26,
                {"format": "onnx", "nms": False},
                "yolo26t_e2e",
                {"output_layout": "end2end", "input_layout": "NCHW", "normalized_boxes": False},
            ),
            (y26, {"format": "tflite"}, None, {**raw, "input_layout": "NCHW", "normalized_boxes": True}),
            (
                y26,
                {"format": "tflite", "nms": False},
                "yolo26t_e2e",
                {"output_layout": "end2end", "input_layout": "NCHW", "normalized_boxes": False},
            ),
            (
                y26,
                {"format": "tflite", "int8": True, **calib},
                None,
                {**raw, "input_layout": "NCHW", "normalized_boxes": True},
            ),
        ]
    else:  # Ultralytics 8.3.x: YOLO11's C2PSA needs >= 64 channels (num_heads = c // 64), so a tiny YOLOv8
        y11 = train(tiny_yaml("yolov8n.yaml", WORK / "yolov8t.yaml"), data, "yolov8t", args.epochs)
        jobs += [
            (y11, {"format": "onnx"}, None, {**raw, "input_layout": "NCHW", "normalized_boxes": False}),
            (
                y11,
                {"format": "tflite", "int8": True, **calib},
                None,
                {**raw, "input_layout": "NHWC", "normalized_boxes": True},
            ),
            (
                y11,
                {"format": "tflite", "nms": True},
                "yolov8t_nms",
                {"output_layout": "end2end", "input_layout": "NHWC", "normalized_boxes": True},
            ),
        ]

    entries = []
    for weights, kwargs, rename, expected in jobs:
        try:
            files = export(weights, dest, rename=rename, **kwargs)
        except Exception as exc:  # record what could not be produced, keep going
            entries.append(
                {"weights": weights.name, "export_args": kwargs, "error": f"{type(exc).__name__}: {exc}"}
            )
            print(f"EXPORT FAILED {weights.name} {kwargs}: {exc}", flush=True)
            continue
        for f in files:
            if f.name.endswith("_float16.tflite") or "dynamic_range" in f.name:
                f.unlink()  # not needed: keep the fixture set small
                continue
            if f.stat().st_size > 1_500_000:
                f.unlink()
                continue
            entry = {
                "file": str(f.relative_to(FIXTURES)),
                "size_bytes": f.stat().st_size,
                "weights": weights.name,
                "model_yaml": weights.stem + ".yaml",
                "export_args": {"imgsz": IMGSZ, **{k: v for k, v in kwargs.items() if k != "data"}},
                "calibration": "models/work/ultralytics_fixtures/data/shapes.yaml (val split, synthetic)"
                if "data" in kwargs
                else None,
                "names": NAMES,
                "expected": dict(expected),
                "tensors": tensor_details(f),
            }
            if f.name.endswith("_full_integer_quant.tflite"):
                entry["expected"]["input_dtype"] = "int8"
            try:
                entry["predict_args"] = {"imgsz": IMGSZ, **PREDICT}
                entry["predictions"] = predictions(f, images)
            except Exception as exc:
                entry["predictions_error"] = f"{type(exc).__name__}: {exc}"
                print(f"PREDICT FAILED {f.name}: {exc}", flush=True)
            entries.append(entry)
            print(f"ok {f.relative_to(FIXTURES)} {f.stat().st_size} B", flush=True)
    manifest = {
        "ultralytics": version,
        "flavor": args.flavor,
        "python": sys.version.split()[0],
        "versions": versions(),
        "train": {"epochs": args.epochs, "imgsz": IMGSZ, "batch": 16, "seed": 0, "images": "96 synthetic"},
        "fixtures": entries,
    }
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "fixtures.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps({e.get("file", "?"): e.get("error", "ok") for e in entries}, indent=1))


if __name__ == "__main__":
    main()
