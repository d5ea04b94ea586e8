#!/usr/bin/env bash
# Rebuild the bundled shapes detectors from scratch: dataset -> train -> export -> evaluate -> demo assets.
# Needs /work/main/.venv (runtime: numpy, opencv, ai-edge-litert, pycocotools) and .venv-models (TensorFlow):
#   python3 -m venv .venv-models
#   .venv-models/bin/pip install "tensorflow-cpu==2.21.*" numpy opencv-python-headless pycocotools onnx onnxruntime
#   echo "$PWD" > .venv-models/lib/python3.11/site-packages/edgeinfer-src.pth   # import edgeinfer from the checkout
# Usage: models/build.sh [train-minutes-s] [train-minutes-n]   (0 minutes for n = export random-init, timing-only)
#        models/build.sh from-onnx   (no Keras checkpoint: re-export only shapes-s_int8.tflite, see below)
set -euo pipefail
cd "$(dirname "$0")/.."
MIN_S=${1:-26}
MIN_M=${2:-0}
TF=.venv-models/bin/python
RT=.venv/bin/python

if [ "$MIN_S" = "from-onnx" ]; then
  # models/work/ (the Keras checkpoint) is not in git: recover the shipped weights from the bundled float32
  # ONNX (BatchNorm folded: fine for export, not for more training), regenerate the training split (the
  # 1,000 calibration images) and the test split, and rewrite only the INT8 TFLite and its manifest entry.
  # The float32 TFLite, the ONNX files and shapes-m stay as they are.
  (cd models && nice -n 5 ../$TF dataset.py --train 12000 --test 1000 --splits train,test)
  (cd models && ../$TF weights_from_onnx.py --variant shapes-s)
  (cd models && ../$TF export.py --variant shapes-s --only int8)
  $RT models/evaluate.py --variant shapes-s   # keeps quantize_onnx.py's ONNX metrics (files unchanged)
  $RT models/evaluate.py --variant shapes-s --check-testimages
  exit 0
fi

(cd models && nice -n 5 ../$TF dataset.py --train 12000 --val 500 --test 1000)
(cd models && nice -n 5 ../$TF train.py --variant shapes-s --minutes "$MIN_S")
(cd models && ../$TF export.py --variant shapes-s)
if [ "$MIN_M" != "0" ]; then
  (cd models && nice -n 5 ../$TF train.py --variant shapes-m --minutes "$MIN_M")
  (cd models && ../$TF export.py --variant shapes-m)
else
  (cd models && ../$TF export.py --variant shapes-m --status timing-only --weights /nonexistent)
fi
$RT models/demo_assets.py
$RT models/evaluate.py --variant shapes-s --onnx
$RT models/quantize_onnx.py --variant shapes-s --evaluate   # INT8 ONNX; needs: .venv/bin/pip install 'edgeinfer[models]'
$RT models/evaluate.py --variant shapes-s --check-testimages
if [ "$MIN_M" != "0" ]; then $RT models/evaluate.py --variant shapes-m; fi
