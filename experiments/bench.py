"""Benchmark the training step: several configurations side by side, in interleaved rounds, with
each one's median time per iteration and its speed relative to the first.

    python -m experiments.bench --stage BN --G_ch 64 --D_ch 64 --batch_size 50 \
        --num_D_steps 1 --num_D_accumulations 4 --resolution 32 --n_classes 20 \
        --n_pretrain_classes 80 --kp_variant cifar --G_attn 0 --D_attn 0 \
        --configs fp32,default,bf16+channels_last+fused+compile

Takes train.py's flags (the model, the stage, batches, optimizer); random weights and random images,
no data or checkpoints needed. A configuration is a precision (fp32, bf16, fp16) joined by '+' with
options (channels_last, fused, compile), each off unless named; 'default' is what train.py runs
without speed flags (--amp auto, --channels_last auto, --fused_resampling auto), and options named
after it are switched on. Rounds interleave the configurations, so that a machine that gets busier
part way through affects them alike. Medians over all timed iterations are given in wall time and in
this process's CPU time (steadier where other processes share the cores). With --limit each
configuration's step is also set against the machine's conv limit (experiments/conv_limit.py): its
counted FLOPs, its convolutions replayed alone, and the share of that limit the step reaches. With
--profile each configuration's step is profiled by operator (where the time outside the
convolutions goes).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from dataclasses import dataclass

import torch

import run_start
import flags
import stages
import train_fns
import utils
from experiments import conv_limit

PRECISIONS = {"fp32": "none", "bf16": "bf16", "fp16": "fp16", "default": "auto"}
OPTIONS = ("channels_last", "fused", "compile")


@dataclass
class Setting:
    """One configuration, as the values of train.py's flags."""
    name: str
    amp: str
    channels_last: str = "off"
    fused_resampling: str = "off"
    compile: bool = False


def parse_setting(name: str) -> Setting:
    precision, *options = name.split("+")
    if precision not in PRECISIONS or any(option not in OPTIONS for option in options):
        raise argparse.ArgumentTypeError(f"{name!r}: give a precision ({', '.join(PRECISIONS)}) "
                                         f"joined by '+' with options ({', '.join(OPTIONS)}), e.g. "
                                         "bf16+channels_last+fused")
    # 'default': train.py's defaults for the rest
    unnamed = "auto" if precision == "default" else "off"

    def switch(option: str) -> str:
        return "on" if option in options else unnamed

    return Setting(name, PRECISIONS[precision], switch("channels_last"), switch("fused"),
                   "compile" in options)


def parse_settings(text: str) -> list[Setting]:
    return [parse_setting(name) for name in text.split(",") if name]


def prepare_parser() -> argparse.ArgumentParser:
    parser = flags.prepare_parser("Benchmark training-step configurations side by side")
    g = parser.add_argument_group("benchmark")
    g.add_argument("--configs", type=parse_settings, default=parse_settings("fp32,default"),
                   help="comma-separated configurations, e.g. "
                        "fp32,default,bf16+channels_last+fused+compile; ratios are relative to "
                        "the first")
    g.add_argument("--rounds", type=utils.at_least(1), default=3, help="interleaved rounds")
    g.add_argument("--warmup", type=utils.at_least(0), default=2,
                   help="untimed iterations per configuration first")
    g.add_argument("--timed", type=utils.at_least(1), default=3,
                   help="timed iterations per configuration and round")
    g.add_argument("--limit", action="store_true",
                   help="also measure each configuration against the machine's conv limit: the "
                        "step's FLOPs, its convolutions replayed alone, the fastest conv "
                        "throughput (experiments/conv_limit.py)")
    g.add_argument("--profile", action="store_true",
                   help="also profile each configuration's step by operator (torch.profiler over "
                        "--timed iterations): the operators that take most time, per iteration, "
                        "and the share of all convolution operators")
    g.add_argument("--json", default="", metavar="FILE",
                   help="also write the results (seconds per iteration, speed-ups, limits) to FILE "
                        "as JSON")
    return parser


def parse(argv=None) -> dict:
    config = vars(prepare_parser().parse_args(argv))
    if not config["resolution"]:
        raise utils.UsageError("give --resolution (the benchmark uses random images, not a "
                               "dataset)")
    if not config["n_classes"]:
        raise utils.UsageError("give --n_classes")
    return flags.finalize_config(config)


def make_step(config: dict, setting: Setting, device) -> train_fns.Step:
    """The training step as train.py builds it (train_fns.build_step), for one configuration: same
    seed, same random weights (the knowledge-propagation path loaded from them as from a source)."""
    utils.seed_rng(config["seed"])
    config = {**config, "amp": setting.amp, "channels_last": setting.channels_last,
              "fused_resampling": setting.fused_resampling, "compile": setting.compile}
    G, D = run_start.build_models(config, device)
    if stages.get(config["stage"]).start == stages.FROM_KNOWLEDGE:
        G.load_previous_knowledge(config["comb_init"])  # from the random "source" weights
    models = train_fns.Models(G, D, *train_fns.make_optimizers(G, D, config))
    return train_fns.build_step(models, config, device)


def synchronized_time(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10  # Linux: KiB


def timed(step, x: torch.Tensor, y: torch.Tensor, itr: int, device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one iteration."""
    wall, cpu = synchronized_time(device), time.process_time()
    step(x, y, itr)
    return synchronized_time(device) - wall, time.process_time() - cpu


def profile(step, x: torch.Tensor, y: torch.Tensor, itr: int, iterations: int,
            device) -> list[tuple[str, float]]:
    """(operator, its own seconds per iteration), largest first: CPU time on a CPU, kernel time
    on a GPU."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for i in range(iterations):
            step(x, y, itr + i)
        synchronized_time(device)
    own = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    seconds = [(event.key, getattr(event, own) / 1e6 / iterations)
               for event in prof.key_averages()]
    return sorted(seconds, key=lambda item: -item[1])


def print_profile(name: str, ops: list[tuple[str, float]], rows: int = 12) -> None:
    total = sum(seconds for _, seconds in ops)
    conv = sum(seconds for op, seconds in ops if "conv" in op)
    print(f"  {name}: profiled {total:.4f} s/itr, convolution operators {conv / total:.0%}; "
          "the largest:")
    for op, seconds in ops[:rows]:
        print(f"    {seconds * 1e3:9.2f} ms/itr {seconds / total:6.1%}  {op}")


def main(argv=None) -> dict:
    config = parse(argv)
    device = utils.pick_device(config["device"] or None)
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    settings = config["configs"]
    n = config["batch_size"] * config["num_D_steps"] * config["num_D_accumulations"]
    res = config["resolution"]
    x = torch.rand(n, 3, res, res, device=device) * 2 - 1
    y = torch.randint(0, config["n_classes"], (n,), device=device)
    steps, warmup_seconds = {}, {}
    for setting in settings:
        step = make_step(config, setting, device)
        print(f"{setting.name}: {step.description}")
        start = synchronized_time(device)
        for i in range(config["warmup"]):
            step(x, y, i + 1)
        warmup_seconds[setting.name] = synchronized_time(device) - start
        steps[setting.name] = step
    wall = {setting.name: [] for setting in settings}
    cpu = {setting.name: [] for setting in settings}
    for _ in range(config["rounds"]):
        for setting in settings:
            for i in range(config["timed"]):
                seconds, cpu_seconds = timed(steps[setting.name], x, y, config["warmup"] + i + 1,
                                             device)
                wall[setting.name].append(seconds)
                cpu[setting.name].append(cpu_seconds)
    medians = {name: statistics.median(t) for name, t in wall.items()}
    cpu_medians = {name: statistics.median(t) for name, t in cpu.items()}
    first = settings[0].name
    print(f"{config['stage']} stage on {device} ({torch.get_num_threads()} threads), G_ch "
          f"{config['G_ch']}, batch {config['batch_size']} x {config['num_D_steps']} D steps x "
          f"{config['num_D_accumulations']} accumulations, {config['rounds']} rounds x "
          f"{config['timed']} timed iterations (medians; ratios to {first}):")
    for setting in settings:
        name = setting.name
        print(f"  {name:36s} {medians[name]:8.4f} s/itr {1 / medians[name]:7.3f} itr/s "
              f"x{medians[first] / medians[name]:5.2f}   CPU {cpu_medians[name]:8.4f} s/itr "
              f"x{cpu_medians[first] / cpu_medians[name]:5.2f}   (warmup "
              f"{warmup_seconds[name]:.1f} s{', compilation included' if setting.compile else ''})")
    limits = {}
    if config["limit"]:
        itr = config["warmup"] + config["timed"] + 1
        for setting in settings:
            limit = conv_limit.measure(lambda: steps[setting.name](x, y, itr), device)
            clocked = cpu_medians if conv_limit.uses_cpu_time(device) else medians
            step_seconds = clocked[setting.name]
            limits[setting.name] = {
                "TFLOP": limit.flops / 1e12, "conv_seconds": limit.conv_seconds,
                "peak_GFLOPs": limit.peak_gflops, "limit_seconds": limit.limit_seconds,
                "of_limit": limit.limit_seconds / step_seconds, "conv_speed": limit.conv_speed,
                "conv_speed_needed_for_80": limit.conv_speed_needed(step_seconds),
                "touched_of_limit": limit.touched(step_seconds)[2],
                "conv3x3_GFLOPs": limit.conv3x3_gflops,
                "of_3x3_limit": limit.conv3x3_share(step_seconds)}
            print(f"  {setting.name}: {limit.describe(step_seconds)}; furthest from the peak:")
            for lost, call in limit.furthest_from_peak():
                print(f"    {lost:7.3f} s lost  {call.gflops:5.0f} GFLOP/s  "
                      f"{call.what}")
    profiles = {}
    if config["profile"]:
        itr = config["warmup"] + config["timed"] + 2
        for setting in settings:
            ops = profile(steps[setting.name], x, y, itr, config["timed"], device)
            profiles[setting.name] = dict(ops)
            print_profile(setting.name, ops)
    print(f"  peak memory {peak_memory_mb(device):.0f} MB")
    result = {"device": str(device), "stage": config["stage"], "s_per_itr": medians,
              "speedup": {name: medians[first] / m for name, m in medians.items()},
              "cpu_s_per_itr": cpu_medians,
              "cpu_speedup": {name: cpu_medians[first] / m for name, m in cpu_medians.items()},
              "limits": limits, "profiles": profiles, "peak_memory_MB": peak_memory_mb(device)}
    if config["json"]:
        with open(config["json"], "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    utils.run_main(main)
