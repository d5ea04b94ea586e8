"""edgeinfer detect IMAGE_OR_DIR... : run the detector on still images."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from edgeinfer.commands._common import config_value, warn_if_timing_only
from edgeinfer.detect.backends.names import BACKEND_NAMES
from edgeinfer.errors import EdgeInferError, SourceError
from edgeinfer.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("edgeinfer.detect")

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect objects in images",
        description="Run the detector on image files and folders of images; one result line per image.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_DIR",
        help=f"image files, and folders of them ({', '.join(sorted(IMAGE_SUFFIXES))})",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="also take the images in the folders' subfolders"
    )
    parser.add_argument(
        "--model",
        default="bundled",
        help="bundled (default), a bundled model name, or a .tflite/.onnx/.engine file",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_NAMES,
        help="inference runtime; auto picks it by the model file's suffix",
    )
    parser.add_argument("--labels", type=Path, help="class names: text (one per line) or YAML with names:")
    # the same rules as the config's detector: section (checked by its own model, so they cannot drift)
    parser.add_argument(
        "--conf",
        type=config_value("DetectorConfig", "conf"),
        default=0.25,
        help="score threshold, greater than 0 and less than 1 (as detector.conf)",
    )
    parser.add_argument(
        "--iou",
        type=config_value("DetectorConfig", "iou"),
        default=0.45,
        help="NMS IoU threshold, greater than 0, at most 1 (as detector.iou)",
    )
    parser.add_argument(
        "--max-det",
        type=config_value("DetectorConfig", "max_det"),
        default=300,
        help="at most this many boxes per image, 1-10000 (as detector.max_det)",
    )
    parser.add_argument(
        "--threads",
        type=config_value("DetectorConfig", "threads"),
        default="auto",
        help="runtime threads, 1-64 or auto (as detector.threads; auto: up to 2)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
    parser.add_argument(
        "--save",
        type=Path,
        metavar="DIR",
        help="write annotated copies here, under the image's name (keeping its folders where names collide)",
    )
    parser.set_defaults(func=run)


class Image(NamedTuple):
    path: Path
    name: Path  # where its annotated copy goes under --save: its name, or its path inside a folder input


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    def listing_error(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else folder
        if where == folder:
            raise SourceError(f"cannot list {folder}: {exc.strerror or exc}")
        logger.warning("%s: skipping it: %s", where, exc.strerror or exc)

    found: list[Path] = []
    for root, dirs, files in os.walk(folder, onerror=listing_error):
        dirs.sort()
        found.extend(Path(root) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        if not recursive:
            break
    return sorted(found)


def collect_images(inputs: list[str], recursive: bool = False) -> list[Image]:
    """Every image the arguments name, each once, checked before the model is loaded: a URL, a video, a
    missing path or a folder without images is a SourceError naming it."""
    images: list[Image] = []
    seen: set[Path] = set()
    for item in inputs:
        if _URL.match(item):
            raise SourceError(
                f"{item}: URLs are not read by detect; download the image first "
                "(a stream URL is a camera source of `edgeinfer run`)"
            )
        path = Path(item).expanduser()
        if _is_dir(path):
            files = _folder_images(path, recursive)
            if not files:
                hint = ""
                if not recursive and _folder_images(path, True):
                    hint = " (there are some in its subfolders: add -r)"
                raise SourceError(f"no images found in {path}{hint}")
            found = [Image(f, f.relative_to(path)) for f in files]
        elif path.is_file():
            if path.suffix.lower() in VIDEO_SUFFIXES:
                raise SourceError(
                    f"{path} is a video; use a camera source: `edgeinfer run -c FILE` with "
                    f"cameras: [{{name: clip, source: {path}}}]"
                )
            found = [Image(path, Path(path.name))]
        elif path.exists():
            raise SourceError(f"{path}: not an image file or a folder")
        else:
            raise SourceError(f"no such image or folder: {path}")
        for image in found:
            key = image.path.resolve()
            if key not in seen:
                seen.add(key)
                images.append(image)
    return images


def save_paths(images: list[Image], folder: Path) -> list[Path]:
    """Where each annotated copy goes: ``folder/NAME``; when two names collide (a/x.jpg and b/x.jpg),
    every copy keeps its path below the images' common folder instead. Never onto an input."""
    names = [image.name for image in images]
    if len(set(names)) < len(names):
        resolved = [image.path.resolve() for image in images]
        common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
        names = [p.relative_to(common) for p in resolved]
        logger.info(
            "--save: images share names, so their copies keep their folders below %s (relative to %s)",
            folder,
            common,
        )
    targets = [folder / name for name in names]
    inputs = {image.path.resolve() for image in images}
    for target in targets:
        if target.resolve() in inputs:
            raise SourceError(f"--save {folder} would overwrite the input {target}: choose another folder")
    return targets


def _looks_like_video(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return (
        head[4:8] == b"ftyp" or head[:4] == b"\x1aE\xdf\xa3" or (head[:4] == b"RIFF" and head[8:11] == b"AVI")
    )


def read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """The decoded image, or None and why not: ``permission denied``, ``is a video; ...``, ``cannot
    decode image`` (the reason a user can act on, not OpenCV's None)."""
    import cv2

    try:
        with path.open("rb") as f:
            f.read(1)
    except PermissionError:
        return None, "permission denied"
    except OSError as exc:
        return None, str(exc.strerror or exc)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        if _looks_like_video(path):
            return None, "is a video; use a camera source"
        return None, "cannot decode image"
    return image, None


def run(args: argparse.Namespace) -> int:
    import cv2

    from edgeinfer.config import DetectorConfig
    from edgeinfer.detect.build import open_detector
    from edgeinfer.draw import annotate

    images = collect_images(args.inputs, args.recursive)
    targets = save_paths(images, args.save) if args.save else None
    warn_if_timing_only(args.model)
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
    for index, (path, _name) in enumerate(images):
        image, problem = read_image(path)
        if image is None:
            failures += 1
            print(
                json.dumps({"image": str(path), "error": problem}) if args.json else f"{path}: {problem}",
                flush=True,
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
        if targets is not None:
            out = targets[index]
            out.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(out), annotate(image, dets, detector.labels)):
                raise EdgeInferError(f"cannot write {out}")
    return 1 if failures else 0
