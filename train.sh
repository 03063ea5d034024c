#!/usr/bin/env bash
# Entry point: `bash train.sh [flags]`; $BASE_DIR (default ./base_dir) holds data/ weights/ logs/ samples/.
#   bash train.sh                         the default run: cGANTransfer's BN stage, then FT, on the shipped
#                                         Fashion-MNIST assets; CPU, no downloads (python -m experiments.demo;
#                                         its flags, e.g. --world toy --seed 1, then train.py's)
#   bash train.sh --dataset NAME ...      your own data: train.py with exactly the flags you give (README)
#   SETUP=ImageNet|cifar bash train.sh    the paper's setups with the official flags (train_ImageNet.sh,
#                                         train_cifar.sh), then yours
set -euo pipefail
cd "$(dirname "$0")"
. scripts/setup.sh
export BASE_DIR=${BASE_DIR:-base_dir}
PYTHON=${PYTHON:-python}
setup=$(setup_of "$@")
case "$setup" in
  ImageNet) exec bash train_ImageNet.sh "$@" ;;
  cifar) exec bash train_cifar.sh "$@" ;;
  custom) exec "$PYTHON" train.py --base_dir "$BASE_DIR" "$@" ;;
  demo) exec "$PYTHON" -m experiments.demo --base_dir "$BASE_DIR" "$@" ;;
esac
