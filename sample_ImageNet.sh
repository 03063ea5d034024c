#!/usr/bin/env bash
# Sample the official cGANTransfer ImageNet -> Places365 model (5 new classes; official
# sample_ImageNet.sh): truncation curve, metrics, an npz of 50k samples, random, class and
# interpolation sheets, from $BASE_DIR/weights/ImageNet2Places_l0.01_res0.1/G_best2.pth.
# Metrics need the reference moments from `bash prepare_data.sh`.
#   bash sample_ImageNet.sh [extra sample.py flags]        e.g. --use_ema, --overwrite
# The model flags come from the checkpoint's saved training config (its state_dict); for
# weights without one, add the training flags (see train_*.sh).
# Later flags win: e.g. --sample_num_npz 5000 --sample_trunc_curves '' for fewer samples and no curve.
# use --z_var to change the variance of z for all the sampling
# use --mybn --accumulate_stats --num_standing_accumulations 32 to
# use running stats
# Use if you also want to calculate KMMD when evaluating the model.
# In that case, "num_inception_images" is decreased to avoid a memory error:
#   --kmmd --num_inception_images 25000
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
exec "$PYTHON" sample.py \
  --base_dir "${BASE_DIR:-base_dir}" --experiment_name ImageNet2Places_l0.01_res0.1 --load_weights best2 \
  --parallel --G_batch_size 512 --seed 0 \
  --G_eval_mode --sample_trunc_curves 0.05_0.05_1.0 \
  --sample_inception_metrics --sample_npz --sample_random --sample_sheets --sample_interps \
  --sample_num_npz 50000 \
  "$@"
