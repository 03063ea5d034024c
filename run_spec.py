"""A training run settled once, before anything runs (StyleGAN2-ADA's options): settle turns the
flags given, the saved configs the run adopts, the data's classes and resolution, and the start
plan (new, from the source model, --start_from, --resume) into a RunSpec: a read-only config, the
run's folder (run_folder.RunFolder) and the checkpoint it starts from. Nothing edits the config
afterwards.

Model flags travel with the weights: a resumed run, a run started from another experiment and a
transfer from a source with a config.json take the flags the user left out from the saved config,
and refuse a given one that differs (a model built otherwise would not fit the weights, or not
compute what was trained). n_classes and resolution always come from the data.
"""
from __future__ import annotations

import os
import types
from dataclasses import dataclass
from typing import Any, Mapping

import BigGAN
import checkpoints
import datasets
import flags
import run_folder
import sampling
import stages
import trained_generator
import utils

# The flags a source model is built with that a transfer model of it shares (its class count
# becomes n_pretrain_classes; the knowledge-propagation variant is the transfer's own choice).
SOURCE_ARCHITECTURE = tuple(f for f in BigGAN.weight_defining_flags()
                            if f not in ("n_classes", "n_pretrain_classes", "kp_variant"))
KINDS = {True: "a knowledge-propagation G", False: "a plain G"}
# Where a run's metrics live: a run continuing it and sample.py measure in the same space unless
# told.
EVALUATION_FLAGS = ("backbone", "inception_weights")


@dataclass(frozen=True)
class StartPlan:
    """The weights a run starts from, read: a resumed set (--resume), another experiment's set to
    continue (--start_from), or a source model to transfer from (weights_root's, or a --stage
    pretrain experiment's); none of them: from scratch."""
    what: str = ""                # how messages name the checkpoint
    resumed: dict | None = None   # the set's parts by checkpoint name, state_dict included
    start: dict | None = None     # G, D, and what it has of optimizers and G_ema
    source: dict | None = None    # G and D, their paths, and the source's saved config


@dataclass(frozen=True)
class RunSpec:
    """A settled training run: config (read-only; config["key"] as ever), folder, start."""
    config: Mapping[str, Any]
    folder: run_folder.RunFolder
    start: StartPlan

    @property
    def draws(self) -> sampling.Draws:
        return draws_of(self.config)


def draws_of(config: Mapping[str, Any]) -> sampling.Draws:
    """How a settled run (train.py's or sample.py's) draws its samples."""
    return sampling.Draws(config["G_batch_size"], config["z_var"], config["n_classes"],
                          config["num_standing_accumulations"], config["seed"])


def parse_flags(argv: list[str] | None = None) -> tuple[dict, set[str]]:
    """train.py's flags (argv: None for sys.argv), derived entries filled, and the flags given."""
    parser = flags.prepare_parser()
    config = flags.finalize_config(vars(parser.parse_args(argv)))
    return config, flags.explicit_flags(parser, argv)


def settle(given: Mapping[str, Any], explicit: set[str] | None = None,
           resume: bool = False) -> RunSpec:
    """The run the flags `given` describe. explicit: the flags the user gave (the others may be
    taken from saved configs; None: all of them). resume: continue the experiment whatever the
    flags say of --resume and --start_from (experiments/runs.py's plan for a stopped run)."""
    config = dict(given)
    if resume:
        config.update(resume=True, start_from="")
    config.update(classes_and_resolution(config))
    if config["resume"] and config["start_from"]:
        raise utils.UsageError("--resume continues this experiment, --start_from starts a new one "
                               "from another: give one of them")
    if config["resume"]:
        start = plan_resume(config, explicit)
    elif config["start_from"]:
        start = plan_start_from(config, explicit)
    elif stages.get(config["stage"]).needs_source_model:
        start = plan_source_model(config, explicit)
    else:
        start = StartPlan()
    if stages.get(config["stage"]).needs_source_model and config["n_pretrain_classes"] <= 0:
        raise utils.UsageError(f"--stage {config['stage']} starts from a pretrained model: give "
                               "--n_pretrain_classes (the classes of the source model, e.g. "
                               "1000), or a source with a config.json")
    frozen = types.MappingProxyType(config)
    return RunSpec(frozen, run_folder.RunFolder.of(frozen), start)


def classes_and_resolution(config: Mapping[str, Any]) -> dict:
    """n_classes from the data (checked against the flag), the class names, and the resolution."""
    spec = datasets.dataset_spec(config["dataset"], config["data_root"], config["resolution"])
    classes = datasets.class_names(config["dataset"], config["data_root"], config["hdf5"],
                                   config["resolution"])
    if config["n_classes"] and config["n_classes"] != len(classes):
        raise utils.UsageError(f"--n_classes {config['n_classes']} but {config['dataset']} has "
                               f"{len(classes)} classes ({', '.join(classes[:10])}...); fix "
                               "--n_classes or the data")
    return {"n_classes": len(classes),
            "class_names": datasets.class_display_names(config["dataset"], config["data_root"]),
            "resolution": config["resolution"] or spec.resolution}


# ---------------------------------------------------------------------------------------------
# Flags from saved configs

def adopted_flags(config: Mapping[str, Any], saved: Mapping[str, Any], explicit: set[str] | None,
                  names: tuple[str, ...], what: str) -> dict:
    """`names` from a saved training config: a flag the user left out gets the saved value; one
    the user gave (explicit; None: every flag counts as given) must equal it. Returns the flags
    taken from the saved config, with their values."""
    adopted, conflicts = {}, []
    for flag in names:
        if flag not in saved or flag not in config or saved[flag] == config[flag]:
            continue
        if explicit is None or flag in explicit:
            conflicts.append(f"--{flag} {config[flag]} (trained with {saved[flag]})")
        else:
            adopted[flag] = saved[flag]
    if conflicts:
        raise utils.UsageError(f"{what} was trained with other model flags than given: "
                               f"{', '.join(conflicts)}; leave these flags out to use the "
                               "checkpoint's values")
    return adopted


def model_flags_of(config: Mapping[str, Any], saved: Mapping[str, Any], explicit: set[str] | None,
                   names: tuple[str, ...], what: str) -> dict:
    """adopted_flags for a training run, whose n_classes and resolution come from the data; says
    what it takes."""
    given = None if explicit is None else explicit | {"n_classes", "resolution"}
    adopted = adopted_flags(config, saved, given, names, what)
    if adopted:
        print(f"Model flags from {what}: "
              + ", ".join(f"--{flag} {value}" for flag, value in adopted.items()))
    return adopted


def evaluation_of(saved: Mapping[str, Any], explicit: set[str] | None) -> dict:
    """The metric backbone and its weights of the run that wrote a checkpoint, where not given."""
    return {flag: saved[flag] for flag in EVALUATION_FLAGS
            if explicit is not None and flag not in explicit and saved.get(flag) is not None}


def source_flags_of(config: Mapping[str, Any], source: Mapping[str, Any],
                    explicit: set[str] | None, what: str) -> dict:
    """A transfer from a source model built as `source` (its saved config): its architecture, its
    class count as n_pretrain_classes, its class names as the old ones, its metric space by
    default."""
    as_transfer = {f: source[f] for f in SOURCE_ARCHITECTURE if f in source}
    if source.get("n_classes") is not None:
        as_transfer["n_pretrain_classes"] = source["n_classes"]
    taken = {**model_flags_of(config, as_transfer, explicit, tuple(as_transfer), what),
             **evaluation_of(source, explicit)}
    if source.get("class_names"):
        taken["old_class_names"] = list(source["class_names"])
    return taken


def check_same_kind(config: Mapping[str, Any], saved: Mapping[str, Any], what: str,
                    advice: str) -> None:
    """A checkpoint continues only in a stage of its kind (BN <-> FT, or among plain G's)."""
    if "stage" not in saved:
        return
    mine, theirs = stages.get(config["stage"]), stages.get(saved["stage"])
    if mine.knowledge_propagation != theirs.knowledge_propagation:
        raise utils.UsageError(f"--stage {config['stage']} trains "
                               f"{KINDS[mine.knowledge_propagation]}, but {what} is a --stage "
                               f"{saved['stage']} run ({KINDS[theirs.knowledge_propagation]}); "
                               f"{advice}")


# ---------------------------------------------------------------------------------------------
# The start plans: each reads its checkpoint and completes config (a draft until settle ends)

def plan_resume(config: dict, explicit: set[str] | None) -> StartPlan:
    """--resume: this experiment's set, and the model flags and metric space it was trained with."""
    resumed = read_resume_set(config)
    config["load_weights"] = resumed.pop("suffix")
    suffix = f" {config['load_weights']}" if config["load_weights"] else ""
    what = f"checkpoint {config['experiment_name']}{suffix}"
    saved = run_folder.saved_config(run_folder.folder(config), resumed["state_dict"])
    config.update(model_flags_of(config, saved, explicit, BigGAN.weight_defining_flags(), what))
    config.update(evaluation_of(saved, explicit))
    check_same_kind(config, saved, what, "resume it with a stage of its kind")
    config.setdefault("old_class_names", saved.get("old_class_names"))
    return StartPlan(what, resumed=resumed)


def plan_start_from(config: dict, explicit: set[str] | None) -> StartPlan:
    """--start_from: a source experiment (--stage pretrain) to transfer from, or a checkpoint of
    this stage's kind to continue as a new experiment."""
    start = read_start_from(config)
    what = f"--start_from {config['start_from']}"
    from_source = start["config"].get("stage") == "pretrain"
    if stages.get(config["stage"]).needs_source_model and from_source:
        config.update(source_flags_of(config, start["config"], explicit, what))
        return StartPlan(what, source=start)
    config.update(model_flags_of(config, start["config"], explicit,
                                 BigGAN.weight_defining_flags(), what))
    config.update(evaluation_of(start["config"], explicit))
    check_same_kind(config, start["config"], what, "start from a checkpoint of its kind, or from a "
                    "--stage pretrain source model")
    config["old_class_names"] = start["config"].get("old_class_names")
    return StartPlan(what, start=start)


def plan_source_model(config: dict, explicit: set[str] | None) -> StartPlan:
    """A transfer from weights_root's source model, built as its config.json says, if any."""
    source = read_source_model(config)
    if source["config"]:
        where = os.path.join(config["weights_root"], run_folder.CONFIG_FILE)
        config.update(source_flags_of(config, source["config"], explicit,
                                      f"the source model's {where}"))
    return StartPlan("the source model", source=source)


# ---------------------------------------------------------------------------------------------
# Reading the weights a run starts from

def parse_start_from(text: str) -> tuple[str, str]:
    """--start_from NAME[:SUFFIX] -> (experiment, suffix); the suffix as --load_weights takes it."""
    name, _, suffix = text.partition(":")
    return name, suffix


def read_set(folder_path: str, suffix: str, parts: list[str], optional: tuple[str, ...], hint: str,
             what: str) -> tuple[str, dict]:
    """(resolved suffix, the set's parts) of a checkpoint a run starts from; no set is one clear
    line."""
    suffix = checkpoints.resolve_suffix(folder_path, suffix, hint)
    # a set that is there but damaged (a truncated G.pth) is named by load_set, file and all
    if checkpoints.slot_name(suffix) not in checkpoints.existing_sets(folder_path):
        others = checkpoints.existing_sets(folder_path)
        if others:
            advice = f"it holds {', '.join(others)}: name one"
        else:
            advice = ("nothing was saved there yet (a run saves every --save_every iterations and "
                      "at its end)")
        name = os.path.basename(checkpoints.part_path(folder_path, "state_dict", suffix))
        raise utils.UsageError(f"{what}: no checkpoint {name} (or its set) in {folder_path}; "
                               f"{advice}, or {hint}")
    return suffix, checkpoints.load_set(folder_path, suffix, parts, optional=optional, hint=hint)


def read_resume_set(config: Mapping[str, Any]) -> dict:
    """The checkpoint set to resume: <experiment>/ with suffix --load_weights ('best': the best of
    the best sets, 'latest' or none: the latest set); its resolved suffix under 'suffix'."""
    name, path = config["experiment_name"], run_folder.folder(config)
    hint = (f"check --experiment_name ({name}), --load_weights "
            f"({config['load_weights'] or 'none'}) and --weights_root")
    if not checkpoints.existing_sets(path):
        raise utils.UsageError(f"--resume: experiment {name} has no checkpoint in {path}: nothing "
                               "was saved there yet (a run saves every --save_every iterations "
                               f"and at its end); start it without --resume, or {hint}")
    parts = ["state_dict", "G", "G_optim", "D", "D_optim"] + (["G_ema"] if config["ema"] else [])
    hint_ema = hint + ("; --ema needs a run trained with --ema" if config["ema"] else "")
    suffix, saved = read_set(path, config["load_weights"], parts, (), hint_ema, "--resume")
    print(f"Resuming from {checkpoints.describe(path, suffix)}, "
          f"iteration {saved['state_dict'].get('itr')}")
    return {**saved, "suffix": suffix}


def read_start_from(config: Mapping[str, Any]) -> dict:
    """The checkpoint set --start_from names: G and D, and what there is of optimizers and G_ema."""
    name, suffix = parse_start_from(config["start_from"])
    path = os.path.join(config["weights_root"], name)
    hint = f"check --start_from ({config['start_from']}: EXPERIMENT[:SUFFIX]) and --weights_root"
    parts = ["state_dict", "G", "D", "G_optim", "D_optim", "G_ema"]
    suffix, saved = read_set(path, suffix, parts, ("G_optim", "D_optim", "G_ema"), hint,
                             "--start_from")
    saved["config"] = run_folder.saved_config(path, saved["state_dict"])
    saved["paths"] = {part: checkpoints.part_path(path, part, suffix) for part in ("G", "D")}
    if not saved["config"]:
        raise utils.UsageError(f"--start_from {config['start_from']}: the checkpoint has no saved "
                               "training config (neither in its state_dict nor a config.json), so "
                               "how it was built is unknown; put its G.pth and D.pth in "
                               "--weights_root and give the model flags instead")
    print(f"Starting from {checkpoints.describe(path, suffix)}, "
          f"iteration {saved['state_dict'].get('itr')}")
    return saved


def read_source_model(config: Mapping[str, Any]) -> dict:
    """The source model in weights_root (BigGAN-PyTorch's G.pth and D.pth), and its config.json if
    any."""
    root = config["weights_root"]
    hint = (f"put the pretrained source model (BigGAN-PyTorch's G.pth and D.pth, "
            f"{config['n_pretrain_classes'] or 'N'} classes) in {root}, point --weights_root / "
            "--base_dir at it, or start from a source experiment with --start_from NAME")
    source = {"config": run_folder.read_config(root) or {}, "paths": {}}
    for part in ("G", "D"):
        path = source["paths"][part] = os.path.join(root, f"{part}.pth")
        state = utils.load_file(path, f"pretrained {part} weights", hint)
        if not isinstance(state, dict):
            raise utils.UsageError(f"{path} holds a {type(state).__name__}, not a state dict; "
                                   f"{hint}")
        source[part] = state
    return source


# ---------------------------------------------------------------------------------------------
# A sampling run (sample.py): its model flags from the checkpoint it reads

def settle_sampling(given: Mapping[str, Any], explicit: set[str]) -> Mapping[str, Any]:
    """sample.py's flags `given`, read-only: the checkpoint --load_weights names (resolved), the
    model flags left out taken from its saved training config (a given model flag that differs
    from it is an error), and the resolution from the data where the checkpoint does not say."""
    config = flags.resolve_roots(dict(given))
    trained_generator.check_experiment_exists(config)
    config["load_weights"] = trained_generator.checkpoint_suffix(config)
    trained = trained_generator.read_checkpoint_state(config).get("config") or {}
    config.update(sampling_flags_of(config, trained, explicit))
    config = flags.finalize_config(config)
    if not config["n_classes"]:
        raise utils.UsageError("the number of classes is unknown: the checkpoint has no saved "
                               "training config; give --n_classes")
    if not config["resolution"]:
        data = datasets.dataset_spec(config["dataset"], config["data_root"])
        config["resolution"] = data.resolution
    return types.MappingProxyType(config)


def sampling_flags_of(config: Mapping[str, Any], trained: Mapping[str, Any],
                      explicit: set[str]) -> dict:
    """The model flags (and dataset, stage), the metric space and the class names of the run that
    wrote the checkpoint, where not given."""
    what = (f"{trained_generator.weights_name(config['use_ema'], config['load_weights'])} of "
            f"{config['experiment_name']}")
    taken = adopted_flags(config, trained, explicit,
                          BigGAN.weight_defining_flags() + ("dataset",), what)
    if taken:
        print("Model flags from the checkpoint: "
              + ", ".join(f"--{flag} {value}" for flag, value in taken.items()))
    taken.update(evaluation_of(trained, explicit))
    taken.update({key: trained.get(key) for key in ("class_names", "old_class_names")})
    if "stage" not in trained:
        if config["n_pretrain_classes"] == 0:
            taken["stage"] = "pretrain"  # no saved config: a source model is a plain BigGAN
    elif "stage" not in explicit:
        taken["stage"] = trained["stage"]
    elif has_old_classes(trained["stage"]) != has_old_classes(config["stage"]):
        kind = "knowledge-propagation" if has_old_classes(trained["stage"]) else "plain"
        raise utils.UsageError(f"{what} was trained with --stage {trained['stage']}, a {kind} G; "
                               f"you gave --stage {config['stage']}: leave --stage out")
    return taken


def has_old_classes(stage: str) -> bool:
    """A knowledge-propagation G keeps the source's class path: it can draw the old classes."""
    return stages.get(stage).knowledge_propagation
