"""Time and peak extra memory of the blockwise KMMD (inception_utils.calc_mmd) at evaluation scale.

The official KMMD builds three N x N distance matrices: 30 GB at N = 50000. The blockwise one
should stay within 2 GB beyond its inputs; this prints what it takes on random features.

    python bench_kmmd.py                      # N = 50000 real and fake 2048-d float32 features
    python bench_kmmd.py --n 10000 --device cuda
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

import inception_utils
import utils

GiB = 1024 ** 3


def prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50000, help="features per side (default: %(default)s)")
    p.add_argument("--dim", type=int, default=2048,
                   help="feature dimension (default: Inception's 2048)")
    p.add_argument("--block_size", type=int, default=inception_utils.KMMD_BLOCK_SIZE,
                   help="rows of the kernel matrix computed at once: memory against speed "
                        "(default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="of the random features (default: %(default)s)")
    return p


def random_features(n: int, dim: int, offset: float, device: torch.device) -> torch.Tensor:
    """Non-negative like Inception pool features; filled in chunks so that making them leaves no
    high-water mark above the features themselves."""
    feats = torch.empty(n, dim, device=device)
    for i in range(0, n, 4096):
        feats[i:i + 4096] = torch.rand(min(4096, n - i), dim, device=device).pow_(2).add_(offset)
    return feats


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reset_peak_resident() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux >= 4.0); False if not
    possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_resident_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(fn, device: torch.device):
    """(result, seconds, peak bytes above what was in use when fn started)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        if not reset_peak_resident():
            print("warning: cannot reset the RSS high-water mark; the peak below is an upper bound")
        baseline = resident_bytes()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else peak_resident_bytes())
    return result, seconds, peak - baseline


def main() -> None:
    args = prepare_parser().parse_args()
    if args.n < 2 or args.dim < 1 or args.block_size < 1:
        raise utils.UsageError("--n must be at least 2, --dim and --block_size at least 1")
    device = utils.pick_device(args.device)
    torch.manual_seed(args.seed)
    real = random_features(args.n, args.dim, 0.0, device)
    fake = random_features(args.n, args.dim, 0.01, device)
    inputs = (real.numel() + fake.numel()) * 4
    print(f"KMMD of {args.n} x {args.n} features of {args.dim}-d float32 on {device}, "
          f"block size {args.block_size} (inputs: {inputs / GiB:.2f} GiB)")
    kmmd, seconds, extra = measure(
        lambda: inception_utils.calc_mmd(real, fake, block_size=args.block_size), device)
    verdict = "within" if extra <= 2 * GiB else "OVER"
    print(f"KMMD = {kmmd:.6f}")
    print(f"time: {seconds:.1f} s")
    print(f"peak extra memory: {extra / GiB:.3f} GiB ({verdict} the 2 GiB target)")


if __name__ == "__main__":
    utils.run_main(main)
