"""Write the dependencies of a wheel as pip requirement files: requirements.txt and requirements-EXTRA.txt.

    python requirements_from_wheel.py WHEEL OUTDIR

Used by containers/Dockerfile's builder stage: the runtime stage installs the dependencies from these files
first (a layer that stays cached until pyproject.toml's dependencies change), then copies edgeinfer itself,
installed by the builder, on top. Environment markers (platform_machine for LiteRT) are kept, so pip
evaluates them on the target architecture.
"""

from __future__ import annotations

import email
import sys
import zipfile
from collections import defaultdict
from pathlib import Path


def main(wheel: str, outdir: str) -> int:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(name))
    by_extra: dict[str, list[str]] = defaultdict(list)
    for requirement in metadata.get_all("Requires-Dist") or []:
        spec, _, marker = requirement.partition(";")
        extra = ""
        if "extra ==" in marker:
            left, _, right = marker.partition("extra ==")
            extra = right.strip().strip("'\"")
            marker = left.strip().removesuffix("and").strip()
        if spec.strip().startswith(metadata["Name"]):
            continue  # the package's own extras ("edgeinfer[onnx,bench]" in dev)
        by_extra[extra].append(spec.strip() + (f"; {marker.strip()}" if marker.strip() else ""))
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for extra, lines in by_extra.items():
        path = out / (f"requirements-{extra}.txt" if extra else "requirements.txt")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{path}: {len(lines)} requirements")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
