#!/usr/bin/env bash
# Entry point: `bash sample.sh [extra sample.py flags]` (e.g. --overwrite to redo the outputs).
# Samples the offline default (the toy_default experiment `bash train.sh` trains in $BASE_DIR,
# default ./base_dir): class and interpolation sheets and metrics in the feature space of the
# project's toy classifier (not Inception). With SETUP=ImageNet or SETUP=cifar, samples the
# paper's models instead (sample_ImageNet.sh, sample_cifar.sh). Outputs: $BASE_DIR/samples/.
set -euo pipefail
cd "$(dirname "$0")"
BASE=${BASE_DIR:-base_dir}
PYTHON=${PYTHON:-python}
TOY=$BASE/weights/toy_default

case "${SETUP:-}" in
  ImageNet) exec bash sample_ImageNet.sh "$@" ;;
  cifar) exec bash sample_cifar.sh "$@" ;;
  ""|toy) ;;
  *) echo "error: SETUP must be ImageNet, cifar or toy (got '$SETUP')" >&2; exit 2 ;;
esac

if [ ! -f "$TOY/G.pth" ]; then
  echo "error: nothing to sample: $TOY/G.pth does not exist. Train the offline default first with" >&2
  echo "\`bash train.sh\` (or set BASE_DIR to the folder that holds it), or sample the paper's models" >&2
  echo "with SETUP=ImageNet or SETUP=cifar." >&2
  exit 1
fi
# The EMA generator when the run kept one (train with --ema), else G itself.
ema=()
if [ -f "$TOY/G_ema.pth" ]; then ema=(--use_ema); fi
# The model flags come from the checkpoint's saved training config.
exec "$PYTHON" sample.py \
  --base_dir "$BASE" --experiment_name toy_default ${ema[@]+"${ema[@]}"} \
  --G_batch_size 50 --G_eval_mode \
  --backbone classifier --inception_weights assets/toy_classifier.pth \
  --sample_sheets --sample_interps --sample_inception_metrics --num_inception_images 500 --kmmd --mfid \
  "$@"
