"""Does a TFLite runtime run the bundled INT8 model on this machine? Evidence for the arm64 runtime choice.

    python tflite_probe.py MODEL.tflite [--runtime litert|tflite_runtime] [--no-xnnpack] [--threads N]

Loads the model, allocates tensors and runs one inference on a fixed pseudo-random uint8 image, in a child
process, so a segfault in the runtime becomes a reported result (`crashed: signal 11 in allocate_tensors`)
instead of killing the probe. Prints one JSON line: runtime and version, where it stopped, the output's
shape and a digest of its bytes (equal digests across machines mean identical results). Used by
containers/README.md's arm64 investigation (run inside the arm64 image under qemu, and natively on amd64).
Standalone on purpose: it needs only numpy and the runtime, not edgeinfer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import signal
import sys
from typing import Any


def _interpreter(runtime: str, model: str, threads: int, xnnpack: bool) -> tuple[Any, str]:
    if runtime == "litert":
        from ai_edge_litert import __version__ as version
        from ai_edge_litert import interpreter as module
    else:
        from tflite_runtime import __version__ as version  # type: ignore[no-redef]
        from tflite_runtime import interpreter as module  # type: ignore[no-redef]
    kwargs: dict[str, Any] = {"model_path": model, "num_threads": threads}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return module.Interpreter(**kwargs), str(version)


def _run(args: argparse.Namespace, stage: Any, result: Any) -> None:
    import numpy as np

    stage.value = b"load"
    interpreter, version = _interpreter(args.runtime, args.model, args.threads, not args.no_xnnpack)
    result.put({"version": version})
    stage.value = b"allocate_tensors"
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    image = np.random.default_rng(0).integers(0, 256, size=inp["shape"], dtype=np.uint8)
    stage.value = b"invoke"
    interpreter.set_tensor(inp["index"], image.astype(inp["dtype"]))
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    result.put({"output_shape": list(out.shape), "digest": hashlib.sha256(out.tobytes()).hexdigest()[:16]})
    stage.value = b"done"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--runtime", choices=["litert", "tflite_runtime"], default="litert")
    parser.add_argument(
        "--no-xnnpack", action="store_true", help="builtin kernels only (no default delegates)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("fork")
    stage = ctx.Array("c", 32)
    result = ctx.Queue()
    child = ctx.Process(target=_run, args=(args, stage, result))
    child.start()
    child.join(timeout=600)
    report: dict[str, Any] = {
        "runtime": args.runtime,
        "xnnpack": not args.no_xnnpack,
        "threads": args.threads,
    }
    while not result.empty():
        report.update(result.get())
    reached = stage.value.decode()
    if child.exitcode == 0 and reached == "done":
        report["result"] = "ok"
    elif child.exitcode is not None and child.exitcode < 0:
        report["result"] = f"crashed: {signal.Signals(-child.exitcode).name} in {reached}"
    else:
        report["result"] = f"failed (exit {child.exitcode}) in {reached}"
    print(json.dumps(report), flush=True)
    return 0 if report["result"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
