#!/usr/bin/env bash
# The official cGANTransfer CIFAR100 setup: a BigGAN pretrained on 80 classes -> 20 new classes
# (one V100 in the paper). Needs: $BASE_DIR/weights/{G,D}.pth (the 80-class source model, e.g.
# trained here with `--stage pretrain`), $BASE_DIR/data/cifar/<one folder per new class> and the
# reference moments from `bash prepare_data.sh`.
# The official cifar code runs `--num_D_steps 4 --num_D_accumulations 1` as ONE D update over 4
# accumulated batches (losses summed); in BigGAN-PyTorch's terms that is 1 step x 4
# accumulations, which we use (the loss is averaged, which Adam barely notices).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
exec "$PYTHON" train.py \
  --base_dir "${BASE_DIR:-base_dir}" --experiment_name CIFAR_l0.01_res0.1 \
  --dataset C100 --stage BN --n_classes 20 --n_pretrain_classes 80 --kp_variant cifar \
  --shuffle --parallel --num_workers 4 --use_multiepoch_sampler \
  --batch_size 50 --num_G_accumulations 1 --num_D_accumulations 4 --num_D_steps 1 \
  --num_epochs 5000 --G_lr 2e-4 --D_lr 2e-4 --G_ortho 0.0 \
  --comb_l1_scale 0.01 --res_l2_scale 0.01 \
  --G_attn 0 --D_attn 0 --G_init N02 --D_init N02 --G_ch 64 --D_ch 64 --SN_eps 1e-8 \
  --test_every 100 --save_every 100 --num_best_copies 5 --num_save_copies 2 --seed 0 \
  "$@"
