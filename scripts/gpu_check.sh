#!/usr/bin/env bash
# A GPU run, prepared (issue 27): the official ImageNet-128 model for a few iterations on every GPU
# (DataParallel --parallel, and torchrun), bf16 and fp16 with GradScaler, the official CIFAR step
# against the GPU's bf16 dense peak, and sample.py on what torchrun trained.
#
#     bash scripts/gpu_check.sh [OUT]            (OUT: default gpu_check_out; everything goes there)
#     PEAK_BF16_TFLOPS=989 bash scripts/gpu_check.sh OUT    (H100/H200 SXM: 989 dense bf16 TFLOP/s)
#
# No ImageNet data, source model or Inception weights are needed: the benchmarks use random images
# and weights, and torchrun trains --stage pretrain on a generated image folder with metrics off.
# Without CUDA (or with GPU_CHECK_TINY=1) the same commands run on a tiny configuration (32 px,
# 4 channels, 2 gloo processes, no fp16: GradScaler's fp16 needs CUDA), which
# tests/test_gpu_check.py runs. Ends with one line per check and its seconds; stops at the first
# failure with one line naming it.
set -euo pipefail
# A new folder each time: nothing a run left is overwritten (train.py would refuse it anyway).
if [[ -n "$(ls -A "${1:-gpu_check_out}" 2>/dev/null)" ]]; then
  echo "gpu_check: ${1:-gpu_check_out} is not empty; give a new folder as OUT" >&2
  exit 2
fi
# OUT is resolved before the cd, so a relative OUT is relative to where the script is started.
OUT=$(mkdir -p "${1:-gpu_check_out}" && cd "${1:-gpu_check_out}" && pwd)
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
BASE="$OUT/base"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

GPUS=0
if [[ "${GPU_CHECK_TINY:-0}" != 1 ]]; then
  GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
fi
if [[ "$GPUS" -gt 0 ]]; then
  TINY=0 DEVICE=cuda PROCS=$GPUS PRECISIONS="bf16 fp16"
  "$PYTHON" -c "import torch; print('GPUs:', $GPUS, 'x', torch.cuda.get_device_name(0))"
else
  TINY=1 DEVICE=cpu PROCS=2 PRECISIONS="bf16"
  echo "no CUDA device (or GPU_CHECK_TINY=1): the tiny configuration on the CPU"
fi
CONFIGS=$(echo "fp32 $PRECISIONS" | tr ' ' ,)

# The official ImageNet-128 model and optimizer (train_ImageNet.sh); batches are set apart below.
IMAGENET=(--G_attn 64 --D_attn 64 --G_shared --hier --dim_z 120 --shared_dim 128
          --G_init ortho --D_init ortho --SN_eps 1e-6 --BN_eps 1e-5 --adam_eps 1e-6
          --G_lr 1e-4 --D_lr 4e-4 --D_B2 0.999 --G_B2 0.999 --num_D_steps 1
          --G_nl inplace_relu --D_nl inplace_relu --G_ch 96 --D_ch 96 --G_eval_mode)
# The official CIFAR step (docs/performance.md, $OFFICIAL).
CIFAR=(--G_ch 64 --D_ch 64 --batch_size 50 --num_D_steps 1 --num_D_accumulations 4 --resolution 32
       --n_classes 20 --n_pretrain_classes 80 --kp_variant cifar --G_attn 0 --D_attn 0
       --G_init N02 --D_init N02 --SN_eps 1e-8)
# 32 images per GPU per forward (the paper's 256 over 8 V100s), one accumulation instead of 8 (the
# official step is 8 of these); a few iterations: the check is that it runs, and how fast. Each
# generated class fills a batch on every GPU (2 of its images are held out as references).
RES=128 BATCH=32 ITERS=4 IMAGES=$((BATCH * PROCS + 2))
SHORT=(--rounds 1 --warmup 1 --timed 2)
if [[ $TINY == 1 ]]; then
  # Later flags win: the same code path at a size one CPU core runs in seconds (attention at 16 px).
  IMAGENET+=(--G_ch 4 --D_ch 4 --G_attn 16 --D_attn 16)
  CIFAR+=(--G_ch 4 --D_ch 4 --batch_size 2 --num_D_accumulations 1)
  RES=32 BATCH=2 ITERS=2 IMAGES=6 SHORT=(--rounds 1 --warmup 0 --timed 1)
fi

# check NAME COMMAND...: runs it with its output in OUT/NAME.log and its seconds in the summary.
check() {
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*"
  if ! "$@" > "$OUT/$name.log" 2>&1; then
    tail -n 20 "$OUT/$name.log"
    echo "gpu_check FAILED: $name (its last lines above; all in $OUT/$name.log)" >&2
    exit 1
  fi
  printf '%-28s ok  %6d s\n' "$name" $((SECONDS - start)) >> "$SUMMARY"
}

# 1. The ImageNet-128 transfer step (stage BN, 5 new of 1000 classes) on one GPU, then DataParallel.
BN=(--stage BN --n_classes 5 --n_pretrain_classes 1000 --kp_variant imagenet --device "$DEVICE")
check imagenet_bench "$PYTHON" -m experiments.bench "${IMAGENET[@]}" "${BN[@]}" \
  --resolution "$RES" --batch_size "$BATCH" --configs "$CONFIGS" "${SHORT[@]}" \
  --json "$OUT/imagenet_bench.json"
check imagenet_bench_parallel "$PYTHON" -m experiments.bench "${IMAGENET[@]}" "${BN[@]}" \
  --parallel --resolution "$RES" --batch_size $((BATCH * PROCS)) --configs "$CONFIGS" \
  "${SHORT[@]}" --json "$OUT/imagenet_bench_parallel.json"

# 2. torchrun train.py on a generated image folder: 3 classes of noise with a class-coloured square.
write_images() {
  "$PYTHON" - "$OUT/images" "$RES" "$IMAGES" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
folder, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
for label, name in enumerate(["red", "green", "blue"]):
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    for i in range(count):
        image = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
        image[size // 4:size // 2, size // 4:size // 2, label] = 230
        Image.fromarray(image).save(os.path.join(folder, name, f"{i}.png"))
EOF
}
check images write_images
check prepare_dataset "$PYTHON" prepare_dataset.py --image_folder "$OUT/images" --new blue \
  --shots 2 --reference_per_class 2 --resolution "$RES" --name gpucheck --base_dir "$BASE"
for precision in $PRECISIONS; do
  # pretrain: a plain BigGAN (no source model); --no_fid: no Inception weights offline.
  check "torchrun_$precision" "$PYTHON" -m torch.distributed.run --standalone \
    --nproc_per_node "$PROCS" train.py "${IMAGENET[@]}" --base_dir "$BASE" --dataset gpucheck_old \
    --stage pretrain --experiment_name "gpucheck_$precision" --amp "$precision" --device "$DEVICE" \
    --batch_size "$BATCH" --num_iters "$ITERS" --save_every "$ITERS" --test_every "$ITERS" \
    --no_fid --num_workers 0 --seed 0
done

# 3. The official CIFAR step against the conv limit (counted FLOPs, conv peak) and the bf16 peak.
check cifar_bench_limit "$PYTHON" -m experiments.bench --stage BN "${CIFAR[@]}" --device "$DEVICE" \
  --limit --configs fp32,default,bf16 "${SHORT[@]}" --json "$OUT/cifar_bench.json"

# 4. Class sheets of what torchrun trained (no metrics: no Inception weights).
check sample "$PYTHON" sample.py --base_dir "$BASE" --experiment_name gpucheck_bf16 \
  --sample_sheets --G_eval_mode --no_fid --G_batch_size "$BATCH" --device "$DEVICE"

echo "== summary ($OUT)"
cat "$SUMMARY"
# Each benchmark's seconds per iteration; for the CIFAR step its achieved TFLOP/s (counted FLOPs /
# wall seconds) and, when PEAK_BF16_TFLOPS is given, their share of the GPU's bf16 dense peak.
"$PYTHON" - "$OUT" "${PEAK_BF16_TFLOPS:-}" <<'EOF' | tee -a "$SUMMARY"
import json, os, sys
out, peak = sys.argv[1], sys.argv[2]
for bench in ("imagenet_bench", "imagenet_bench_parallel", "cifar_bench"):
    result = json.load(open(os.path.join(out, bench + ".json")))
    for name, seconds in result["s_per_itr"].items():
        line = f"{bench} {name}: {seconds:.4f} s/itr"
        if name in result["limits"]:
            tflops = result["limits"][name]["TFLOP"] / seconds
            share = f", {tflops / float(peak):.1%} of the {peak} TFLOP/s bf16 peak" if peak else ""
            line += f", {tflops:.3f} TFLOP/s{share}"
        print(line + f" (peak memory {result['peak_memory_MB']:.0f} MB)")
EOF
