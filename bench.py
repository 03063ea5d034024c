"""Benchmark one training configuration: iterations per second and peak memory on this device.

    python bench.py --stage BN --G_ch 16 --D_ch 16 --resolution 32 --n_classes 4 --n_pretrain_classes 12 ...
Takes train.py's flags; random weights and random images (no data or checkpoints needed). Prints
the median time per iteration over --timed iterations after --warmup, so versions can be compared.
"""
from __future__ import annotations

import resource
import statistics
import time

import torch

import BigGAN
import train
import train_fns
import utils


def parse(argv=None) -> dict:
    parser = utils.prepare_parser("Benchmark a training configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--timed", type=int, default=10)
    config = vars(parser.parse_args(argv))
    if not config["resolution"]:
        raise utils.UsageError("give --resolution (the benchmark uses random images, not a dataset)")
    if not config["n_classes"]:
        raise utils.UsageError("give --n_classes")
    return utils.finalize_config(config)


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10  # Linux: KiB


def main(argv=None) -> dict:
    config = parse(argv)
    device = utils.pick_device(config["device"] or None)
    utils.seed_rng(config["seed"])
    G, D = train.build_models(config, device)
    if config["stage"] != "pretrain":
        G.load_previous_knowledge()
    G_optim = torch.optim.Adam(G.parameters(), lr=config["G_lr"], betas=(config["G_B1"], config["G_B2"]))
    D_optim = torch.optim.Adam(D.parameters(), lr=config["D_lr"], betas=(config["D_B1"], config["D_B2"]))
    precision = train_fns.Precision(config["amp"], device)
    step = train_fns.GAN_training_function(G, D, BigGAN.G_D(G, D), G_optim, D_optim, None, config,
                                           precision, device)
    n = config["batch_size"] * config["num_D_steps"] * config["num_D_accumulations"]
    res = config["resolution"]
    x = torch.rand(n, 3, res, res, device=device) * 2 - 1
    y = torch.randint(0, config["n_classes"], (n,), device=device)
    times = []
    for i in range(config["warmup"] + config["timed"]):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step(x, y, i + 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= config["warmup"]:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {"device": str(device), "stage": config["stage"], "s_per_itr": median, "itr_per_s": 1 / median,
              "peak_memory_MB": peak_memory_mb(device), "threads": torch.get_num_threads()}
    print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    utils.run_main(main)
