"""An experiment's folder, and how a run of it starts: new from the source model (or from another
experiment's checkpoint, --start_from), or resumed (--resume), built with the model flags its weights
were trained with.

    weights/G.pth, D.pth [, config.json]     the pretrained source model (BigGAN-PyTorch's layout); its
                                             config.json, when there, says how it was built
    weights/<experiment>/                    checkpoint sets (checkpoints.py) and config.json, the run's
                                             flags, written when it starts (StyleGAN2-ADA's
                                             training_options.json, BigGAN-PyTorch's metadata)

Model flags travel with the weights: a resumed run, a run started from another experiment and a
transfer from a source with a config.json take the flags the user left out from the saved config,
and refuse a given one that differs (a model built otherwise would not fit the weights, or not
compute what was trained). n_classes and resolution always come from the data.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import sys
from typing import Any

import torch
import torch.distributed as dist

import BigGAN
import checkpoints
import datasets
import stages
import train_fns
import utils
from train_fns import Models

CONFIG_FILE = "config.json"

# The flags a source model is built with that a transfer model of it shares (its class count becomes
# n_pretrain_classes; the knowledge-propagation variant is the transfer's own choice).
SOURCE_ARCHITECTURE = tuple(f for f in BigGAN.weight_defining_flags() if f not in ("n_classes", "n_pretrain_classes",
                                                                                  "kp_variant"))
KINDS = {True: "a knowledge-propagation G", False: "a plain G"}
# Where a run's metrics live: a run continuing it and sample.py measure in the same space unless told.
EVALUATION_FLAGS = ("backbone", "inception_weights")


# ---------------------------------------------------------------------------------------------
# Names and folders

def folder(config: dict) -> str:
    return os.path.join(config["weights_root"], config["experiment_name"])


NOT_IN_A_NAME = re.compile(r"[/\\:\x00-\x1f\x7f]")
FILE_EXTENSIONS = (".pth", ".json", ".npz", ".hdf5", ".pt")


def check_name(name: str, weights_root: str) -> None:
    """Refuse a --experiment_name whose folder would not be a subfolder of weights_root of its own:
    '.', '..', paths, hidden names, file names (G.pth), a link, or an existing file. (':' separates an
    experiment from a checkpoint in --start_from NAME:SUFFIX.)"""
    path = os.path.join(weights_root, name)
    problem = None
    if not name.strip() or name != name.strip() or name.startswith(".") or NOT_IN_A_NAME.search(name):
        problem = ("must be a plain folder name: no path separators, ':' or control characters, not starting "
                   "with '.' (so not '.' or '..'), no spaces around it")
    elif name.lower().endswith(FILE_EXTENSIONS):
        problem = "looks like a file name (the source model's G.pth and D.pth live beside the experiments)"
    elif os.path.islink(path):
        problem = f"is a link ({path} -> {os.readlink(path)}); runs write only into folders of their own"
    elif os.path.exists(path) and not os.path.isdir(path):
        problem = f"is an existing file in {weights_root}"
    if problem:
        raise utils.UsageError(f"--experiment_name {name!r} {problem}; choose another name")


def write_config(config: dict) -> None:
    """config.json in the experiment folder: the flags of the run that starts now."""
    utils.write_atomically(os.path.join(folder(config), CONFIG_FILE),
                           lambda f: f.write(json.dumps(config, indent=1, sort_keys=True, default=str) + "\n"))


JSON_SCALARS = (bool, int, float, str)


def saved_config_types() -> dict[str, Any]:
    """The type of each key of a saved config.json that a run takes over: the model flags (those of
    G's and D's constructor defaults), the metric space, the data and the classes."""
    model = {name: type(parameter.default) for cls in (BigGAN.Generator, BigGAN.Discriminator)
             for name, parameter in inspect.signature(cls.__init__).parameters.items()
             if name in BigGAN.weight_defining_flags() and type(parameter.default) in JSON_SCALARS}
    return {**model, "backbone": str, "inception_weights": str | None, "dataset": str, "stage": str,
            "which_best": str, "class_names": list[str] | None, "old_class_names": list[str] | None}


def read_config(folder_path: str) -> dict | None:
    """A config.json beside weights (an experiment's, or the source model's); None when absent. Its
    keys are checked (saved_config_types). A relative inception_weights that names a file next to it
    is taken as relative to its folder (a shipped source names its classifier so); otherwise a
    relative path is as the run that wrote it was given it (relative to the working directory)."""
    config = utils.read_json_object(os.path.join(folder_path, CONFIG_FILE),
                                    "restore it or delete it (then give the model flags)",
                                    saved_config_types())
    weights = (config or {}).get("inception_weights")
    beside = os.path.normpath(os.path.join(folder_path, weights)) if weights else ""
    if weights and not os.path.isabs(weights) and os.path.isfile(beside):
        config["inception_weights"] = beside
    return config


def saved_config(folder_path: str, state: dict) -> dict:
    """The training config a checkpoint was written with: its state_dict's, else the folder's config.json."""
    return state.get("config") or read_config(folder_path) or {}


# ---------------------------------------------------------------------------------------------
# Model flags from saved configs

def adopt_saved_config(config: dict, saved: dict, explicit: set[str] | None, flags: tuple[str, ...],
                       what: str) -> list[str]:
    """Take `flags` from a saved training config: a flag the user left out gets the saved value; one
    the user gave (explicit; None: every flag counts as given) must equal it. Returns the flags whose
    value was taken from the saved config."""
    adopted, conflicts = [], []
    for flag in flags:
        if flag not in saved or flag not in config or saved[flag] == config[flag]:
            continue
        if explicit is None or flag in explicit:
            conflicts.append(f"--{flag} {config[flag]} (trained with {saved[flag]})")
        else:
            config[flag] = saved[flag]
            adopted.append(flag)
    if conflicts:
        raise utils.UsageError(f"{what} was trained with other model flags than given: {', '.join(conflicts)}; "
                               "leave these flags out to use the checkpoint's values")
    return adopted


def _adopt(config: dict, saved: dict, explicit: set[str] | None, flags: tuple[str, ...], what: str) -> None:
    given = None if explicit is None else explicit | {"n_classes", "resolution"}  # both come from the data
    adopted = adopt_saved_config(config, saved, given, flags, what)
    if adopted:
        print(f"Model flags from {what}: " + ", ".join(f"--{flag} {config[flag]}" for flag in adopted))


def adopt_evaluation(config: dict, saved: dict, explicit: set[str] | None) -> None:
    """The metric backbone and its weights of the run that wrote a checkpoint, where not given."""
    for flag in EVALUATION_FLAGS:
        if explicit is not None and flag not in explicit and saved.get(flag) is not None:
            config[flag] = saved[flag]


def adopt_source_config(config: dict, source: dict, explicit: set[str] | None, what: str) -> None:
    """A transfer from a source model built as `source` (its saved config): its architecture, its
    class count as n_pretrain_classes, its class names as the old ones, its metric space by default."""
    as_transfer = {**{f: source[f] for f in SOURCE_ARCHITECTURE if f in source},
                   "n_pretrain_classes": source.get("n_classes")}
    if as_transfer["n_pretrain_classes"] is None:
        del as_transfer["n_pretrain_classes"]
    _adopt(config, as_transfer, explicit, tuple(as_transfer), what)
    adopt_evaluation(config, source, explicit)
    if source.get("class_names"):
        config["old_class_names"] = list(source["class_names"])


def check_same_kind(config: dict, saved: dict, what: str, advice: str) -> None:
    """A checkpoint continues only in a stage of its kind (BN <-> FT, or among plain G's)."""
    if "stage" not in saved:
        return
    mine, theirs = stages.get(config["stage"]), stages.get(saved["stage"])
    if mine.knowledge_propagation != theirs.knowledge_propagation:
        raise utils.UsageError(f"--stage {config['stage']} trains {KINDS[mine.knowledge_propagation]}, but {what} is a "
                               f"--stage {saved['stage']} run ({KINDS[theirs.knowledge_propagation]}); {advice}")


# ---------------------------------------------------------------------------------------------
# Reading the weights a run starts from

def parse_start_from(text: str) -> tuple[str, str]:
    """--start_from NAME[:SUFFIX] -> (experiment, suffix); the suffix as --load_weights takes it."""
    name, _, suffix = text.partition(":")
    return name, suffix


def read_set(folder_path: str, suffix: str, parts: list[str], optional: tuple[str, ...], hint: str,
             what: str) -> tuple[str, dict]:
    """(resolved suffix, the set's parts) of a checkpoint a run starts from; no set is one clear line."""
    suffix = checkpoints.resolve_suffix(folder_path, suffix, hint)
    # a set that is there but damaged (a truncated G.pth) is named by load_set, file and all
    if checkpoints.slot_name(suffix) not in checkpoints.existing_sets(folder_path):
        others = checkpoints.existing_sets(folder_path)
        if others:
            advice = f"it holds {', '.join(others)}: name one"
        else:
            advice = "nothing was saved there yet (a run saves every --save_every iterations and at its end)"
        name = os.path.basename(checkpoints.part_path(folder_path, "state_dict", suffix))
        raise utils.UsageError(f"{what}: no checkpoint {name} (or its set) in {folder_path}; {advice}, or {hint}")
    return suffix, checkpoints.load_set(folder_path, suffix, parts, optional=optional, hint=hint)


def read_resume_set(config: dict) -> dict:
    """The checkpoint set to resume: <experiment>/ with suffix --load_weights ('best': the best of the
    best sets, 'latest' or none: the latest set)."""
    name, path = config["experiment_name"], folder(config)
    hint = f"check --experiment_name ({name}), --load_weights ({config['load_weights'] or 'none'}) and --weights_root"
    if not checkpoints.existing_sets(path):
        raise utils.UsageError(f"--resume: experiment {name} has no checkpoint in {path}: nothing was saved there yet "
                               "(a run saves every --save_every iterations and at its end); start it without "
                               f"--resume, or {hint}")
    parts = ["state_dict", "G", "G_optim", "D", "D_optim"] + (["G_ema"] if config["ema"] else [])
    hint_ema = hint + ("; --ema needs a run trained with --ema" if config["ema"] else "")
    config["load_weights"], saved = read_set(path, config["load_weights"], parts, (), hint_ema, "--resume")
    print(f"Resuming from {checkpoints.describe(path, config['load_weights'])}, iteration {saved['state_dict'].get('itr')}")
    return saved


def read_start_from(config: dict) -> dict:
    """The checkpoint set --start_from names: G and D, and what there is of optimizers and G_ema."""
    name, suffix = parse_start_from(config["start_from"])
    path = os.path.join(config["weights_root"], name)
    hint = f"check --start_from ({config['start_from']}: EXPERIMENT[:SUFFIX]) and --weights_root"
    parts = ["state_dict", "G", "D", "G_optim", "D_optim", "G_ema"]
    suffix, saved = read_set(path, suffix, parts, ("G_optim", "D_optim", "G_ema"), hint, "--start_from")
    saved["config"] = saved_config(path, saved["state_dict"])
    saved["paths"] = {part: checkpoints.part_path(path, part, suffix) for part in ("G", "D")}
    if not saved["config"]:
        raise utils.UsageError(f"--start_from {config['start_from']}: the checkpoint has no saved training config "
                               "(neither in its state_dict nor a config.json), so how it was built is unknown; put "
                               "its G.pth and D.pth in --weights_root and give the model flags instead")
    print(f"Starting from {checkpoints.describe(path, suffix)}, iteration {saved['state_dict'].get('itr')}")
    return saved


def read_source_model(config: dict) -> dict:
    """The source model in weights_root (BigGAN-PyTorch's G.pth and D.pth), and its config.json if any."""
    root = config["weights_root"]
    hint = (f"put the pretrained source model (BigGAN-PyTorch's G.pth and D.pth, {config['n_pretrain_classes'] or 'N'} "
            f"classes) in {root}, point --weights_root / --base_dir at it, or start from a source experiment with "
            "--start_from NAME")
    source = {"config": read_config(root) or {}, "paths": {}}
    for part in ("G", "D"):
        path = source["paths"][part] = os.path.join(root, f"{part}.pth")
        state = utils.load_file(path, f"pretrained {part} weights", hint)
        if not isinstance(state, dict):
            raise utils.UsageError(f"{path} holds a {type(state).__name__}, not a state dict; {hint}")
        source[part] = state
    return source


# ---------------------------------------------------------------------------------------------
# Loading weights into the models

def load_source(G: BigGAN.Generator, D: BigGAN.Discriminator, source: dict, config: dict) -> None:
    """The source model's weights (read_source_model, read_start_from), then knowledge loading or the
    old classes' mean, as the stage says."""
    stage = stages.get(config["stage"])
    for model, part in ((G, "G"), (D, "D")):
        if not checkpoints.all_finite(source[part]):
            raise utils.UsageError(f"{source['paths'][part]} holds non-finite values (NaN or inf): the source model is "
                                   "damaged or came from a diverged run; use a healthy checkpoint")
        try:
            if stage.start == stages.FROM_KNOWLEDGE:
                BigGAN.load_pretrained_state_dict(model, source[part], f"pretrained {part}")
            else:
                BigGAN.mean_class_init(model, source[part], config["n_pretrain_classes"], f"pretrained {part}")
        except BigGAN.WeightsMismatch as err:
            raise utils.UsageError(str(err)) from err
    if stage.start == stages.FROM_KNOWLEDGE:
        G.load_previous_knowledge(config["comb_init"])


def load_into(objects: dict[str, Any], saved: dict, what: str) -> None:
    """A checkpoint set's parts into the models and optimizers (by checkpoint name) that both have."""
    for part, obj in objects.items():
        if part not in saved:
            continue
        try:
            obj.load_state_dict(saved[part])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
            lines = str(err).strip().splitlines()
            problem = lines[-1][:300] if lines else type(err).__name__
            raise utils.UsageError(f"{what}: {part} does not fit the model built from the flags ({problem}); "
                                   "use the flags it was trained with") from err


def apply_optimizer_flags(models: Models, config: dict) -> None:
    """A run continuing loaded optimizers trains with the learning rates, betas and eps the user gives
    now (the loaded optimizers would keep the checkpoint's), and says what changed."""
    changes = []
    for optimizer, who in ((models.G_optim, "G"), (models.D_optim, "D")):
        wanted = {"lr": (f"{who}_lr", config[f"{who}_lr"]),
                  "betas": (f"{who}_B1/{who}_B2", (config[f"{who}_B1"], config[f"{who}_B2"])),
                  "eps": ("adam_eps", config["adam_eps"])}
        for key, (flag, value) in wanted.items():
            old = optimizer.param_groups[0][key]
            if (tuple(old) if isinstance(old, (list, tuple)) else old) != value:
                changes.append(f"--{flag} {value} (checkpoint: {old})")
            for group in optimizer.param_groups:
                group[key] = value
    if changes:
        print("Optimizers with the flags given: " + ", ".join(changes))


# ---------------------------------------------------------------------------------------------
# The run's state

def new_run_state(config: dict) -> dict:
    """The counters saved as state_dict.pth: BigGAN-PyTorch's keys with its meanings (save_num and
    save_best_num: the copy and best slot written next; best_IS/FID/KMMD: the best value seen so far),
    plus where the data stands and the latest evaluation (metrics, that of a best set's own weights)."""
    return {"itr": 0, "epoch": 0, "epoch_batches": 0, "save_num": 0, "save_best_num": 0,
            "best_IS": 0.0, "best_FID": float("inf"), "best_KMMD": float("inf"), "metrics": {}, "config": config}


def resumed_state(saved_state: dict, config: dict) -> dict:
    """The run's state from a resumed checkpoint; a new stage (BN -> FT in one experiment, the official
    route) tracks its best checkpoints anew."""
    state = new_run_state(config)
    state.update({k: v for k, v in saved_state.items() if k != "config"})
    previous = (saved_state.get("config") or {}).get("stage")
    if previous and previous != config["stage"]:
        fresh = new_run_state(config)
        for key in ("best_IS", "best_FID", "best_KMMD", "metrics"):
            state[key] = fresh[key]
        state["evaluation_due"] = False  # the previous stage's evaluation, not this one's
        print(f"Stage {config['stage']} after {previous}: its best checkpoints are tracked anew")
    return state


def rng_states(device) -> list[dict]:
    """Every process's random state (CPU, and CUDA where it draws the noise), gathered on all ranks:
    each rank draws its own noise, so an exact resume needs each one's."""
    own = {"cpu": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state(device) if torch.device(device).type == "cuda" else None}
    if not (dist.is_available() and dist.is_initialized()):
        return [own]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, own)
    return gathered


def restore_rng_state(state: dict, rank: int, world_size: int, device) -> None:
    """This rank's random state from a resumed checkpoint."""
    saved = state.get("rng_states")
    if saved is None:  # written before per-process states were saved: one process's CPU state
        if "rng_state" in state:
            torch.set_rng_state(state["rng_state"])
        return
    if len(saved) != world_size and rank == 0:
        print(f"warning: the checkpoint was trained by {len(saved)} process(es), this run has {world_size}: "
              "the resumed noise differs from an uninterrupted run's", file=sys.stderr)
    own = saved[rank % len(saved)]
    torch.set_rng_state(own["cpu"])
    if torch.device(device).type == "cuda" and own.get("cuda") is not None:
        torch.cuda.set_rng_state(own["cuda"], device)


def guard_new_experiment(config: dict) -> None:
    """A new run never writes over checkpoints: any set there (latest, a copy, a best one) refuses it."""
    found = checkpoints.existing_sets(folder(config))
    if found:
        raise utils.UsageError(f"experiment {config['experiment_name']} already has checkpoints in "
                               f"{folder(config)} ({', '.join(found)}); continue it with --resume "
                               f"(--load_weights {found[0] if found[0] != 'latest' else 'SUFFIX'} for another set), "
                               "or choose another --experiment_name")


def where_to_continue(folder_path: str) -> str:
    """For a run that stopped: what is saved, and how to go on."""
    saved = checkpoints.saved_iteration(folder_path, "") if checkpoints.has_checkpoint(folder_path) else -1
    if saved < 0:
        return "nothing of it was saved: start it again once the problem is fixed"
    return f"its last checkpoint (iteration {saved}) in {folder_path} is intact: --resume continues from there"


# ---------------------------------------------------------------------------------------------
# Starting a run

def set_classes_and_resolution(config: dict) -> None:
    """n_classes from the data (checked against the flag), the class names, and the resolution."""
    spec = datasets.dataset_spec(config["dataset"], config["data_root"], config["resolution"])
    classes = datasets.class_names(config["dataset"], config["data_root"], config["hdf5"], config["resolution"])
    if config["n_classes"] and config["n_classes"] != len(classes):
        raise utils.UsageError(f"--n_classes {config['n_classes']} but {config['dataset']} has "
                               f"{len(classes)} classes ({', '.join(classes[:10])}...); fix --n_classes or the data")
    config["n_classes"] = len(classes)
    config["class_names"] = datasets.class_display_names(config["dataset"], config["data_root"])
    config["resolution"] = config["resolution"] or spec.resolution


def build_models(config: dict, device) -> tuple[BigGAN.Generator, BigGAN.Discriminator]:
    model_config = stages.model_config(config)
    return BigGAN.Generator(**model_config).to(device), BigGAN.Discriminator(**model_config).to(device)


def prepare_models(config: dict, device, is_main: bool, explicit: set[str] | None = None) -> tuple[Models, dict]:
    """The run's models and optimizers, and its state: resumed (--resume), continuing another
    experiment's checkpoint or transferring from a source model (--start_from, else weights_root's
    source model as the stage needs), or from scratch. The model flags come from the saved configs
    first; the random initialization follows (seeded by the caller), then the loading."""
    stage = stages.get(config["stage"])
    if config["resume"] and config["start_from"]:
        raise utils.UsageError("--resume continues this experiment, --start_from starts a new one from another: "
                               "give one of them")
    resumed = read_resume_set(config) if config["resume"] else None
    start, source = None, None
    if resumed is not None:
        what = f"checkpoint {config['experiment_name']}{' ' + config['load_weights'] if config['load_weights'] else ''}"
        saved = saved_config(folder(config), resumed["state_dict"])
        _adopt(config, saved, explicit, BigGAN.weight_defining_flags(), what)
        adopt_evaluation(config, saved, explicit)
        check_same_kind(config, saved, what, "resume it with a stage of its kind")
        config.setdefault("old_class_names", saved.get("old_class_names"))
    elif config["start_from"]:
        start = read_start_from(config)
        what = f"--start_from {config['start_from']}"
        if stage.needs_source_model and start["config"].get("stage") == "pretrain":
            source = start  # a source experiment: transfer from it
            adopt_source_config(config, start["config"], explicit, what)
        else:
            _adopt(config, start["config"], explicit, BigGAN.weight_defining_flags(), what)
            adopt_evaluation(config, start["config"], explicit)
            check_same_kind(config, start["config"], what, "start from a checkpoint of its kind, or from a "
                            "--stage pretrain source model")
            config["old_class_names"] = start["config"].get("old_class_names")
    elif stage.needs_source_model:
        source = read_source_model(config)
        if source["config"]:
            adopt_source_config(config, source["config"], explicit,
                                f"the source model's {os.path.join(config['weights_root'], CONFIG_FILE)}")
    if stage.needs_source_model and config["n_pretrain_classes"] <= 0:
        raise utils.UsageError(f"--stage {config['stage']} starts from a pretrained model: give --n_pretrain_classes "
                               "(the classes of the source model, e.g. 1000), or a source with a config.json")

    G, D = build_models(config, device)
    if source is not None:
        load_source(G, D, source, config)
    elif start is not None:  # weights first: G_ema starts as a copy of the loaded G
        load_into({"G": G, "D": D}, start, what)
    # After loading (and knowledge loading): the official code copied G before, a bug.
    G_ema = train_fns.ema_copy(G) if config["ema"] else None
    models = Models(G, D, *train_fns.make_optimizers(G, D, config), G_ema=G_ema)
    if resumed is not None:
        load_into(models.named(), resumed, f"checkpoint of {config['experiment_name']}")
        apply_optimizer_flags(models, config)
        return models, resumed_state(resumed["state_dict"], config)
    if start is not None and source is None:  # its optimizers and G_ema, where it has them
        load_into({part: obj for part, obj in models.named().items() if part not in ("G", "D")}, start, what)
        apply_optimizer_flags(models, config)
    if is_main:
        guard_new_experiment(config)
    return models, new_run_state(config)


# ---------------------------------------------------------------------------------------------
# Reading a trained generator (sample.py, explain.py)

def weights_name(use_ema: bool, suffix: str) -> str:
    part = "G_ema" if use_ema else "G"
    return f"{part}_{suffix}" if suffix else part


def read_run_state(folder_path: str, suffix: str, hint: str) -> dict:
    """A checkpoint's state_dict (itr, training config; the folder's config.json when the set has no
    state_dict, e.g. a copied source model); empty when neither is there."""
    state = checkpoints.load_set(folder_path, suffix, ["state_dict"], optional=("state_dict",),
                                 hint=hint).get("state_dict", {})
    config = saved_config(folder_path, state)
    return {**state, "config": config} if config else state


def read_generator_weights(folder_path: str, suffix: str, use_ema: bool, hint: str) -> dict:
    """G's (or G_ema's) weights, checked to be of the same save as the state_dict, and finite."""
    part = "G_ema" if use_ema else "G"
    state = checkpoints.load_set(folder_path, suffix, [part], hint=hint)[part]
    if not checkpoints.all_finite(state):
        raise utils.UsageError(f"the weights of {weights_name(use_ema, suffix)} in {folder_path} hold non-finite "
                               "values (NaN or inf): that run diverged; use an earlier checkpoint (--load_weights)")
    return state


def bn_statistics_counterpart(key: str, own: dict) -> str | None:
    """The name `key` (a BN running statistic) has in the other layout: <bn>.stored_mean without
    --mybn, <bn>.bn.stored_mean with it. Both hold the same running statistics."""
    head, _, leaf = key.rpartition(".")
    if key in own or leaf not in ("stored_mean", "stored_var"):
        return None
    other = f"{head[:-len('.bn')]}.{leaf}" if head.endswith(".bn") else f"{head}.bn.{leaf}"
    return other if other in own else None


def match_bn_layout(state: dict, own: dict) -> dict:
    """A checkpoint trained with or without --mybn, renamed for G's layout, so that --mybn
    --accumulate_stats works on any checkpoint (the official scripts suggest it for sampling)."""
    matched = {bn_statistics_counterpart(key, own) or key: value for key, value in state.items()
               if not (key.endswith(".bn.accumulation_counter") and key not in own)}
    for key, value in own.items():
        if key.endswith(".bn.accumulation_counter") and key not in matched:
            matched[key] = value  # a checkpoint without --mybn has no counter: start it fresh
    return matched


def build_trained_generator(config: dict, weights: dict, what: str) -> BigGAN.Generator:
    """G built from config (skip_init: every weight comes from the checkpoint) with `weights` loaded,
    in either BN-statistics layout; weights that do not fit the flags are one clear line."""
    try:
        G = BigGAN.Generator(**{**stages.model_config(config), "skip_init": True})
    except ValueError as err:
        raise utils.UsageError(f"{err}; fix the model flags") from err
    try:
        G.load_state_dict(match_bn_layout(weights, G.state_dict()))
    except RuntimeError as err:
        first_problem = (str(err).splitlines()[1:] or [str(err)])[0].strip()[:300]
        raise utils.UsageError(f"the weights of {what} do not fit the generator built from the flags, which are "
                               f"probably wrong: {first_problem}; use the flags the experiment was trained with") from err
    return G
