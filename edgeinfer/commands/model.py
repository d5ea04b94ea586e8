"""edgeinfer model inspect PATH | model build-engine ONNX"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeinfer.detect.backends.base import TensorInfo


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("model", help="inspect a model or build a TensorRT engine")
    verbs = parser.add_subparsers(
        dest="model_verb", required=True, metavar="inspect|build-engine", help="what to do with it"
    )
    inspect = verbs.add_parser("inspect", help="tensors, quantization, YOLO layout, class names, sha256")
    inspect.add_argument(
        "path",
        nargs="?",
        default="bundled",
        help="bundled, a bundled model name, or a .tflite/.onnx/.engine file",
    )
    inspect.add_argument("--labels", type=Path, help="class names file, instead of the model's metadata")
    inspect.add_argument("--json", action="store_true", help="print it as one JSON document")
    inspect.set_defaults(func=_inspect)
    build = verbs.add_parser("build-engine", help="build a TensorRT .engine from an .onnx (on the Jetson)")
    build.add_argument("onnx", type=Path, help="the .onnx model to build it from")
    build.add_argument("--output", type=Path, help="default: the .onnx path with .engine")
    build.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    build.add_argument("--int8", action="store_true", help="allow INT8 kernels (needs a Q/DQ ONNX)")
    build.add_argument("--max-batch", type=int, default=4, help="largest batch the engine accepts")
    build.set_defaults(func=_build_engine)


def _tensor(t: TensorInfo) -> dict[str, Any]:
    return {
        "name": t.name,
        "shape": list(t.shape),
        "dtype": str(t.dtype),
        "quantization": {"scale": t.scale, "zero_point": t.zero_point} if t.scale else None,
    }


def describe(path: str, labels: Path | None = None) -> dict[str, Any]:
    from edgeinfer.config import DetectorConfig
    from edgeinfer.detect.build import open_detector

    detector = open_detector(DetectorConfig().model_copy(update={"model": path, "labels": labels}))
    info = detector.info
    return {
        "file": str(info.path),
        "sha256": info.sha256,
        "size_bytes": info.path.stat().st_size,
        "backend": f"{info.backend} {info.runtime_version}",
        "input": _tensor(detector.backend.input),
        "outputs": [_tensor(t) for t in detector.backend.outputs],
        "input_layout": info.input_layout,
        "input_size": list(info.input_hw),
        "channels": info.channels,
        "yolo_layout": info.output_layout,
        "boxes": "normalized" if info.normalized_boxes else "pixels",
        "num_classes": len(info.labels),
        "names": info.labels,
    }


def _inspect(args: argparse.Namespace) -> int:
    data = describe(args.path, args.labels)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"file      {data['file']} ({data['size_bytes'] / 1024:.0f} KiB)")
    print(f"sha256    {data['sha256']}")
    print(f"runtime   {data['backend']}")
    for role, tensors in (("input", [data["input"]]), ("output", data["outputs"])):
        for t in tensors:
            q = t["quantization"]
            quant = f" scale={q['scale']:.6g} zero_point={q['zero_point']}" if q else ""
            print(f"{role:<9} {t['name']} {t['shape']} {t['dtype']}{quant}")
    print(
        f"layout    {data['yolo_layout']} (input {data['input_layout']} {data['channels']}, boxes {data['boxes']})"
    )
    print(f"classes   {data['num_classes']}: {', '.join(data['names'])}")
    return 0


def _build_engine(args: argparse.Namespace) -> int:
    from edgeinfer.detect.backends.tensorrt import build_engine

    output = args.output or args.onnx.with_suffix(".engine")
    build_engine(args.onnx, output, fp16=args.fp16, int8=args.int8, max_batch=args.max_batch)
    print(f"wrote {output}")
    return 0
