#!/usr/bin/env bash
# Entry point: `bash sample.sh [flags]`; outputs in $BASE_DIR/samples/ (default ./base_dir).
#   bash sample.sh                        the default run's FT model (WORLD=fashion or toy), the checkpoint
#                                         and weights its report gave: class and interpolation sheets and
#                                         metrics in the world's classifier space
#   bash sample.sh --experiment_name NAME [--load_weights best] ...
#                                         your own experiment: sheets, interpolations, metrics, and the
#                                         sample.py flags you give (sizes: --num_inception_images,
#                                         --sample_num_npz with --sample_npz, ...)
#   SETUP=ImageNet|cifar bash sample.sh   the paper's models (sample_ImageNet.sh, sample_cifar.sh)
# Later flags win: any flag here can be given again to change it (e.g. --overwrite to redo outputs).
set -euo pipefail
cd "$(dirname "$0")"
. scripts/setup.sh
BASE=${BASE_DIR:-base_dir}
PYTHON=${PYTHON:-python}
setup=$(setup_of "$@")
case "$setup" in
  ImageNet) exec bash sample_ImageNet.sh "$@" ;;
  cifar) exec bash sample_cifar.sh "$@" ;;
  custom) exec "$PYTHON" sample.py --base_dir "$BASE" --G_eval_mode --sample_sheets --sample_interps \
            --sample_inception_metrics --num_inception_images 1000 "$@" ;;
esac
WORLD=${WORLD:-fashion}
EXPERIMENT=${WORLD}_FT
if [ ! -f "$BASE/weights/$EXPERIMENT/G.pth" ]; then
  echo "error: nothing to sample: $BASE/weights/$EXPERIMENT/G.pth does not exist. Run the default run first" >&2
  echo "with \`bash train.sh\` (WORLD=$WORLD: \`bash train.sh --world $WORLD\`), set BASE_DIR to the folder" >&2
  echo "that holds it, or sample your own experiment with --experiment_name NAME." >&2
  exit 1
fi
# What the default run reported: its best set (by FID), with G_ema where the run sampled G_ema
# (--use_ema in its saved config). The model flags come from that config too.
USE_EMA=()
if grep -q '"use_ema": true' "$BASE/weights/$EXPERIMENT/config.json" 2>/dev/null; then
  USE_EMA=(--use_ema)
fi
exec "$PYTHON" sample.py \
  --base_dir "$BASE" --experiment_name "$EXPERIMENT" --load_weights best "${USE_EMA[@]}" \
  --G_batch_size 50 --G_eval_mode --backbone classifier --inception_weights "assets/${WORLD}_classifier.pth" \
  --sample_sheets --sample_interps --sample_inception_metrics --num_inception_images 1000 --kmmd --mfid \
  --precision_recall "$@"
