#!/usr/bin/env bash
# Prepare data for training and evaluation: `bash prepare_data.sh [flags]`; $BASE_DIR default ./base_dir.
#   bash prepare_data.sh                  the default run's data: the world's few shots, reference statistics
#                                         and source model (python -m experiments.demo --prepare_only; --world toy)
#   bash prepare_data.sh --idx DIR ...    your own dataset (prepare_dataset.py, with exactly your flags:
#                                         --torchvision NAME, --idx DIR or --image_folder DIR, --new, --shots, ...)
#   SETUP=ImageNet|cifar bash prepare_data.sh
#                                         the paper's setups: Inception reference statistics of
#                                         data/ImageNet or data/cifar (HDF5=1 first builds the HDF5 cache);
#                                         extra flags go to calculate_inception_moments.py (e.g.
#                                         --inception_weights PATH where torchvision cannot download)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/setup.sh
BASE=${BASE_DIR:-base_dir}
PYTHON=${PYTHON:-python}
setup=$(setup_of "$@")
case "$setup" in
  demo) exec "$PYTHON" -m experiments.demo --base_dir "$BASE" --prepare_only "$@" ;;
  custom) exec "$PYTHON" prepare_dataset.py --base_dir "$BASE" "$@" ;;
  ImageNet) dataset=I128 ;;
  cifar) dataset=C100 ;;
esac
hdf5=()
if [ "${HDF5:-0}" = 1 ]; then
  "$PYTHON" make_hdf5.py --dataset "$dataset" --base_dir "$BASE" --batch_size 256
  hdf5=(--hdf5)
fi
"$PYTHON" calculate_inception_moments.py --dataset "$dataset" --base_dir "$BASE" --batch_size 64 \
  ${hdf5[@]+"${hdf5[@]}"} "$@"
