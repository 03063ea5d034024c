#!/usr/bin/env bash
# Reproduces the shipped toy source model (assets/toy_source/{G,D}.pth): a plain BigGAN trained
# with our own `--stage pretrain` on the 12 old toy classes (500 generated images each).
# About 50 minutes on 2 idle CPU cores (8000 iterations). G.pth ships G itself: on this short
# schedule the EMA copy lags behind (old-class consistency 80% vs 88% for G, toy classifier).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
BASE=${BASE_DIR:-base_dir_source}
"$PYTHON" toy_data.py --base_dir "$BASE" --source_images_per_class 500 --target_images_per_class 25 --seed 0
# The toy architecture, defined once in toy_default.py (the offline default transfers this model).
read -r -a ARCH <<< "$("$PYTHON" -c 'import toy_default; print(" ".join(toy_default.TOY_ARCHITECTURE))')"
# One thread: on 2 cores this is several times faster than competing OpenMP threads.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PYTHON" train.py --base_dir "$BASE" --dataset ToySource32 \
  --stage pretrain --experiment_name toy_source "${ARCH[@]}" --batch_size 16 --num_D_steps 1 --num_D_accumulations 1 \
  --G_lr 2e-4 --D_lr 2e-4 --ema --use_ema --ema_start 500 --ema_decay 0.999 \
  --num_iters "${NUM_ITERS:-8000}" --save_every 250 --no_fid --use_multiepoch_sampler --num_epochs 1000 \
  --num_workers 0 --seed 0 "$@"
mkdir -p assets/toy_source
cp "$BASE/weights/toy_source/G.pth" assets/toy_source/G.pth
cp "$BASE/weights/toy_source/D.pth" assets/toy_source/D.pth
echo "wrote assets/toy_source/{G,D}.pth"
