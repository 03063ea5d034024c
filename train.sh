#!/usr/bin/env bash
# Entry point: `bash train.sh [extra train.py flags]`.
# With real data and weights prepared in $BASE_DIR (default ./base_dir), runs the official setup:
# SETUP=ImageNet (train_ImageNet.sh) or SETUP=cifar (train_cifar.sh), auto-detected from
# $BASE_DIR/data/ImageNet or $BASE_DIR/data/cifar next to $BASE_DIR/weights/G.pth.
# Otherwise runs the offline default (toy_default.py): CPU, no downloads, about 15 minutes.
#   bash train.sh --stage FT --resume --load_weights best0     # then fine-tune
set -euo pipefail
cd "$(dirname "$0")"
export BASE_DIR=${BASE_DIR:-base_dir}
PYTHON=${PYTHON:-python}
setup=${SETUP:-auto}
if [ "$setup" = auto ]; then
  setup=toy
  if [ -f "$BASE_DIR/weights/G.pth" ]; then
    if [ -d "$BASE_DIR/data/ImageNet" ]; then setup=ImageNet; elif [ -d "$BASE_DIR/data/cifar" ]; then setup=cifar; fi
  fi
fi
case "$setup" in
  ImageNet) exec bash train_ImageNet.sh "$@" ;;
  cifar) exec bash train_cifar.sh "$@" ;;
  toy) exec "$PYTHON" toy_default.py --base_dir "$BASE_DIR" "$@" ;;
  *) echo "error: SETUP must be ImageNet, cifar or toy (got '$setup')" >&2; exit 2 ;;
esac
