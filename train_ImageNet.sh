#!/usr/bin/env bash
# The official cGANTransfer ImageNet -> Places365 setup (5 new classes; 8 V100s in the paper).
# Needs: $BASE_DIR/weights/{G,D}.pth (BigGAN-PyTorch's 128px ImageNet model, 1000 classes),
#        $BASE_DIR/data/ImageNet/<one folder per new class>, and the reference moments from
#        `bash prepare_data.sh`. Stage BN first, then e.g.
#        `bash train_ImageNet.sh --stage FT --resume --load_weights best0`.
# As in the official code, each forward batch holds --batch_size images and D/G accumulate
# gradients over 8 of them (effective batch 2048, BigGAN's); with less GPU memory, lower
# --batch_size and raise --num_{G,D}_accumulations so their product stays the same.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
exec "$PYTHON" train.py \
  --base_dir "${BASE_DIR:-base_dir}" --experiment_name ImageNet2Places_l0.01_res0.1 \
  --dataset I128 --stage BN --n_classes 5 --n_pretrain_classes 1000 --kp_variant imagenet \
  --parallel --shuffle --num_workers 8 --use_multiepoch_sampler \
  --batch_size 256 --num_G_accumulations 8 --num_D_accumulations 8 --num_D_steps 1 \
  --G_lr 1e-4 --D_lr 4e-4 --D_B2 0.999 --G_B2 0.999 --adam_eps 1e-6 \
  --res_l2_scale 0.1 --comb_l1_scale 0.01 \
  --G_attn 64 --D_attn 64 --G_nl inplace_relu --D_nl inplace_relu \
  --SN_eps 1e-6 --BN_eps 1e-5 --G_ortho 0.0 --G_shared --G_init ortho --D_init ortho \
  --hier --dim_z 120 --shared_dim 128 --G_eval_mode --G_ch 96 --D_ch 96 \
  --test_every 100 --save_every 100 --num_best_copies 5 --num_save_copies 2 --seed 0 \
  "$@"
