"""edgeinfer detect IMAGE_OR_DIR... : run the detector on still images."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from edgeinfer.detect.backends.names import BACKEND_NAMES
from edgeinfer.errors import EdgeInferError, SourceError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("detect", help="detect objects in images")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    parser.add_argument(
        "--model", default="bundled", help="bundled (default) or a .tflite/.onnx/.engine file"
    )
    parser.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    parser.add_argument("--labels", type=Path, help="class names: text (one per line) or YAML with names:")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.45)
    parser.add_argument("--max-det", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
    parser.add_argument("--save", type=Path, metavar="DIR", help="write annotated copies here")
    parser.set_defaults(func=run)


def iter_images(inputs: list[str]) -> Iterator[Path]:
    from edgeinfer.sources.images import IMAGE_SUFFIXES

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise SourceError(f"no such image or folder: {path}")


def run(args: argparse.Namespace) -> int:
    import cv2

    from edgeinfer.config import DetectorConfig
    from edgeinfer.detect.build import open_detector
    from edgeinfer.draw import annotate

    detector = open_detector(
        DetectorConfig().model_copy(
            update={
                "model": args.model,
                "backend": args.backend,
                "threads": args.threads,
                "conf": args.conf,
                "iou": args.iou,
                "max_det": args.max_det,
                "labels": args.labels,
            }
        )
    )
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in iter_images(args.inputs):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            failures += 1
            print(
                json.dumps({"image": str(path), "error": "cannot decode image"})
                if args.json
                else f"{path}: cannot decode image"
            )
            continue
        (dets,), timing = detector.detect_timed([image])
        objects = dets.to_json(detector.labels)
        if args.json:
            record = {
                "image": str(path),
                "width": image.shape[1],
                "height": image.shape[0],
                "detections": objects,
                "timing_ms": {k: round(v, 3) for k, v in timing.items()},
            }
            print(json.dumps(record), flush=True)
        else:
            found = ", ".join(f"{o['label']} {o['score']:.2f}" for o in objects) or "nothing"
            print(f"{path}: {found}  ({timing['inference']:.1f} ms inference)")
        if args.save:
            out = args.save / path.name
            if not cv2.imwrite(str(out), annotate(image, dets, detector.labels)):
                raise EdgeInferError(f"cannot write {out}")
    return 1 if failures else 0
