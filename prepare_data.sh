#!/usr/bin/env bash
# Prepare the target data for training and evaluation: `bash prepare_data.sh [extra flags]`.
#   SETUP=ImageNet  base_dir/data/ImageNet/<class>/... -> reference statistics (Inception)
#   SETUP=cifar     base_dir/data/cifar/<class>/...    -> reference statistics (Inception)
#   SETUP=toy       the offline default's data, statistics and source model (toy classifier space)
# SETUP defaults to whichever of data/ImageNet, data/cifar exists, else toy. HDF5=1 first builds
# the HDF5 cache (make_hdf5.py) and computes the statistics from it. Extra flags go to
# calculate_inception_moments.py (e.g. --inception_weights PATH where torchvision cannot download).
# Both read the images with one loader process per core, 8 at most (their --num_workers default).
set -euo pipefail
cd "$(dirname "$0")"
BASE=${BASE_DIR:-base_dir}
PYTHON=${PYTHON:-python}
setup=${SETUP:-auto}
if [ "$setup" = auto ]; then
  setup=toy
  if [ -d "$BASE/data/ImageNet" ]; then setup=ImageNet; elif [ -d "$BASE/data/cifar" ]; then setup=cifar; fi
fi
case "$setup" in
  ImageNet) dataset=I128 ;;
  cifar) dataset=C100 ;;
  toy) exec "$PYTHON" toy_default.py --base_dir "$BASE" --prepare_only "$@" ;;
  *) echo "error: SETUP must be ImageNet, cifar or toy (got '$setup')" >&2; exit 2 ;;
esac
hdf5=()
if [ "${HDF5:-0}" = 1 ]; then
  "$PYTHON" make_hdf5.py --dataset "$dataset" --base_dir "$BASE" --batch_size 256
  hdf5=(--hdf5)
fi
"$PYTHON" calculate_inception_moments.py --dataset "$dataset" --base_dir "$BASE" --batch_size 64 \
  ${hdf5[@]+"${hdf5[@]}"} "$@"
