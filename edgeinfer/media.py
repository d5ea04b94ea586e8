"""File suffixes edgeinfer recognises: images (detect, folder cameras) and videos (told apart from images).

Standard library only: the CLI builds its help from these without importing OpenCV.
"""

from __future__ import annotations

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".h264", ".h265", ".264", ".265", ".hevc", ".flv", ".wmv", ".3gp",
})  # fmt: skip
