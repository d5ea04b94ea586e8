"""A folder of still images (jpg/png/bmp/webp/tiff), read in natural name order."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.errors import SourceError
from edgeinfer.media import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

# The still images edgeinfer reads (folder cameras and ``edgeinfer detect DIR``): what cv2.imread decodes.


def _natural_key(path: Path) -> list[int | str]:
    """frame2.png sorts before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderReader:
    """Each :meth:`read` returns the next image of the folder; None after the last one.

    An unreadable file is skipped with a warning (once per file) rather than failing the camera.
    """

    live = False

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self._files: list[Path] = []
        self._next = 0
        self._warned: set[Path] = set()

    def describe(self) -> str:
        return f"image folder {self.folder}"

    def open(self) -> None:
        try:
            entries = list(self.folder.iterdir())
        except OSError as exc:
            raise SourceError(f"{self.describe()}: cannot list it: {exc.strerror}") from None
        files = sorted(
            (p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key
        )
        if not files:
            raise SourceError(f"{self.describe()}: no {'/'.join(sorted(IMAGE_SUFFIXES))} files in it")
        self._files = files
        self._next = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return image
            if path not in self._warned:
                self._warned.add(path)
                logger.warning("%s: skipping %s: not a readable image", self.describe(), path.name)
        return None

    def close(self) -> None:
        self._files = []
        self._next = 0
