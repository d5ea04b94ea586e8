"""`edgeinfer detect --json DIR` with NMS ties broken by index: the test harness for tests/containers.

numpy's default argsort is not stable and dispatches to CPU-specific SIMD code; it ordered equal scores
differently in the amd64 and arm64 images, so where two overlapping candidates have the same INT8 score, NMS keeps one on
amd64 and the other on arm64. Run inside an image (mounted in), this makes that one choice the same on both,
so what remains to compare is the model, the runtime and the pre/post-processing. Test code, not product.
"""

import sys

import numpy

import edgeinfer.detect.nms as nms
from edgeinfer.cli import main


class _StableArgsort:
    def __getattr__(self, name: str) -> object:
        return getattr(numpy, name)

    @staticmethod
    def argsort(a, *args, kind=None, **kwargs):  # type: ignore[no-untyped-def]
        return numpy.argsort(a, *args, kind="stable", **kwargs)


nms.np = _StableArgsort()  # type: ignore[assignment]
sys.exit(main(["detect", "--json", *sys.argv[1:]]))
