"""Benchmark the training step: several configurations side by side, in interleaved rounds, with
each one's median time per iteration and its speed relative to the first.

    python bench.py --stage BN --G_ch 64 --D_ch 64 --batch_size 50 --num_D_steps 1 --num_D_accumulations 4 \
        --resolution 32 --n_classes 20 --n_pretrain_classes 80 --kp_variant cifar --G_attn 0 --D_attn 0 \
        --configs fp32,bf16,bf16+channels_last,bf16+compile

Takes train.py's flags (the model, the stage, batches, optimizer); random weights and random images,
no data or checkpoints needed. A configuration is a precision (fp32, bf16, fp16) joined by '+' with
options (channels_last, compile). Rounds interleave the configurations, so that a machine that gets
busier or cooler part way through affects them alike; the median over all timed iterations is given.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from dataclasses import dataclass

import torch

import acceleration
import BigGAN
import stages
import train
import train_fns
import utils

PRECISIONS = {"fp32": "none", "bf16": "bf16", "fp16": "fp16"}
OPTIONS = ("channels_last", "compile")


@dataclass
class Setting:
    name: str
    amp: str
    channels_last: bool = False
    compile: bool = False


def parse_setting(name: str) -> Setting:
    precision, *options = name.split("+")
    if precision not in PRECISIONS or any(option not in OPTIONS for option in options):
        raise argparse.ArgumentTypeError(f"{name!r}: give a precision ({', '.join(PRECISIONS)}) joined by '+' "
                                         f"with options ({', '.join(OPTIONS)}), e.g. bf16+channels_last")
    return Setting(name, PRECISIONS[precision], "channels_last" in options, "compile" in options)


def parse_settings(text: str) -> list[Setting]:
    return [parse_setting(name) for name in text.split(",") if name]


def parse(argv=None) -> dict:
    parser = utils.prepare_parser("Benchmark training-step configurations side by side")
    g = parser.add_argument_group("benchmark")
    g.add_argument("--configs", type=parse_settings, default=parse_settings("fp32"),
                   help="comma-separated configurations, e.g. fp32,bf16,bf16+channels_last,bf16+compile; "
                        "ratios are relative to the first")
    g.add_argument("--rounds", type=utils.at_least(1), default=3, help="interleaved rounds")
    g.add_argument("--warmup", type=utils.at_least(0), default=2, help="untimed iterations per configuration first")
    g.add_argument("--timed", type=utils.at_least(1), default=3, help="timed iterations per configuration and round")
    config = vars(parser.parse_args(argv))
    if not config["resolution"]:
        raise utils.UsageError("give --resolution (the benchmark uses random images, not a dataset)")
    if not config["n_classes"]:
        raise utils.UsageError("give --n_classes")
    return utils.finalize_config(config)


def make_step(config: dict, setting: Setting, device):
    """A training step as train.py builds it, for one configuration (same seed, same weights)."""
    utils.seed_rng(config["seed"])
    config = {**config, "amp": setting.amp}
    G, D = train.build_models(config, device)
    if stages.get(config["stage"]).start == stages.FROM_KNOWLEDGE:
        G.load_previous_knowledge(config["comb_init"])  # from the random "source" weights
    models = train_fns.Models(G, D, *train_fns.make_optimizers(G, D, config))
    if setting.channels_last:
        acceleration.use_channels_last(G, D)
    GD = BigGAN.G_D(G, D)
    if setting.compile:
        GD = acceleration.compile_step_module(GD)
    step = train_fns.GAN_training_function(models, GD, None, config, acceleration.Precision(setting.amp, device), device)
    return step, GD


def synchronized_time(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10  # Linux: KiB


def main(argv=None) -> dict:
    config = parse(argv)
    device = utils.pick_device(config["device"] or None)
    settings = config["configs"]
    n = config["batch_size"] * config["num_D_steps"] * config["num_D_accumulations"]
    res = config["resolution"]
    x = torch.rand(n, 3, res, res, device=device) * 2 - 1
    y = torch.randint(0, config["n_classes"], (n,), device=device)
    steps, warmup_seconds = {}, {}
    for setting in settings:
        step, GD = make_step(config, setting, device)
        start = synchronized_time(device)
        for i in range(config["warmup"]):
            step(x, y, i + 1)
        warmup_seconds[setting.name] = synchronized_time(device) - start
        steps[setting.name] = step
    times = {setting.name: [] for setting in settings}
    for _ in range(config["rounds"]):
        for setting in settings:
            for i in range(config["timed"]):
                start = synchronized_time(device)
                steps[setting.name](x, y, config["warmup"] + i + 1)
                times[setting.name].append(synchronized_time(device) - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    first = medians[settings[0].name]
    print(f"{config['stage']} stage on {device} ({torch.get_num_threads()} threads), G_ch {config['G_ch']}, "
          f"batch {config['batch_size']} x {config['num_D_steps']} D steps x {config['num_D_accumulations']} "
          f"accumulations, {config['rounds']} rounds x {config['timed']} timed iterations:")
    for setting in settings:
        name = setting.name
        print(f"  {name:28s} {medians[name]:8.4f} s/itr  {1 / medians[name]:7.3f} itr/s  "
              f"x{first / medians[name]:5.2f}  (warmup {warmup_seconds[name]:.1f} s"
              f"{', compilation included' if setting.compile else ''})")
    print(f"  peak memory {peak_memory_mb(device):.0f} MB")
    return {"device": str(device), "stage": config["stage"], "s_per_itr": medians,
            "speedup": {name: first / m for name, m in medians.items()}, "peak_memory_MB": peak_memory_mb(device)}


if __name__ == "__main__":
    utils.run_main(main)
