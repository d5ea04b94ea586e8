"""The backend names ``detector.backend`` and ``--backend`` accept: one Literal, importing nothing heavy.

``config/schema.py`` types DetectorConfig.backend with it and the CLIs take their ``choices`` from
:data:`BACKEND_NAMES`, so a backend added to the registry is added here once (a unit test checks the two agree).
"""

from __future__ import annotations

from typing import Literal, get_args

BackendName = Literal["auto", "litert", "tflite", "onnxruntime", "tensorrt"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)
