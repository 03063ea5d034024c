"""train_fns.py: our fp32 training step reproduces the official cGANTransfer cifar step, iteration
by iteration, for both stages (tests/fixtures/cgantransfer/c32_small_steps: the official code run
from the c32_small transfer fixture on recorded noise and real batches), on any CPU and thread
count: BN exactly, FT up to the rounding noise that Adam amplifies
(violations_beyond_rounding_noise). And when --patience stops a run: the evaluations without
improvement, each counted once, anew for a new stage. And BigGAN's orthogonal regularization: the
gradient of its penalty, by autograd, added to the weights it may touch, in any memory format."""
import dataclasses
import math

import pytest
import torch

import BigGAN
import flags
import stages
import train_fns
from conftest import FIXTURE_COMMON, load_fixture

OFFICIAL = load_fixture("cgantransfer", "c32_small_steps", "official_steps.pt")
LOSSES = ("G_loss", "D_loss_real", "D_loss_fake")  # the official G_loss includes the penalties


def official_config(stage: str, **flags_given: str) -> dict:
    config = vars(flags.prepare_parser().parse_args([]))
    config.update({**OFFICIAL["config"], **FIXTURE_COMMON, "stage": stage, "kp_variant": "cifar",
                   "G_batch_size": OFFICIAL["config"]["batch_size"], "freezeD_layer": -1,
                   "official_numerics": True, **flags_given})
    return config


def start_state() -> dict[str, dict]:
    """G's and D's state dicts where both official runs start (the c32_small transfer fixture)."""
    return {"G": load_fixture("cgantransfer", "c32_small", "G.pth"),
            "D": load_fixture("cgantransfer", "c32_small", "D.pth")}


def official_models(config: dict, state: dict) -> train_fns.Models:
    G = BigGAN.Generator(**stages.model_config(config))
    D = BigGAN.Discriminator(**stages.model_config(config))
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    return train_fns.Models(G, D, *train_fns.make_optimizers(G, D, config))


def feed_recorded_draws(monkeypatch, record: dict, first: int = 0) -> None:
    """From draw `first` on, sample_z_y returns the recorded draws: per iteration the D step's, then
    the G step's."""
    draws = iter(zip(record["z"][first:], record["y"][first:]))
    monkeypatch.setattr(train_fns, "sample_z_y", lambda *args, **kwargs: next(draws))


def run_official_iterations(stage: str, monkeypatch, **flags_given: str) -> list[tuple]:
    """Our step, built as train.py builds it (train_fns.build_step: precision and speed options from
    the flags, --official_numerics unless given), over the recorded draws and batches:
    [(losses, G state, D state)] after each iteration."""
    config, record = official_config(stage, **flags_given), OFFICIAL[stage]
    models = official_models(config, start_state())
    feed_recorded_draws(monkeypatch, record)
    step = train_fns.build_step(models, config, "cpu")
    results = []
    for i, (x, y) in enumerate(zip(record["x"], record["y_real"])):
        models.G.train(), models.D.train()
        losses = step(x, y, i + 1)
        results.append((losses, {k: v.clone() for k, v in models.G.state_dict().items()},
                        {k: v.clone() for k, v in models.D.state_dict().items()}))
    return results


def teacher_forced_losses(stage: str, monkeypatch, **flags_given: str) -> list[tuple[dict, dict]]:
    """[(our losses, official losses)] of every iteration t whose start and D update are recorded:
    our step started from the official G and D after iteration t - 1, with D's optimizer step
    replaced by the official D update of iteration t, so one pass of rounding separates the two."""
    config, record = official_config(stage, **flags_given), OFFICIAL[stage]
    after = {0: start_state(), **record["after"]}
    pairs = []
    for t in range(1, len(record["losses"]) + 1):
        if t - 1 not in after or t not in after:
            continue
        models = official_models(config, after[t - 1])

        @torch.no_grad()
        def official_D_update(D=models.D, official=after[t]["D"]):
            for name, p in D.named_parameters():
                p.copy_(official[name])

        monkeypatch.setattr(models.D_optim, "step", official_D_update)
        feed_recorded_draws(monkeypatch, record, first=2 * (t - 1))
        step = train_fns.build_step(models, config, "cpu")
        models.G.train(), models.D.train()
        losses = step(record["x"][t - 1], record["y_real"][t - 1], t)
        pairs.append((losses, record["losses"][t - 1]))
    return pairs


def bn_fed_biases(names) -> set[str]:
    """G's biases whose output goes into a BatchNorm (the linear layer and every block conv): their
    true gradient is 0, so Adam (beta1 0, eps 1e-8) moves them by about ±lr on rounding noise, in
    the official run and ours alike, but not with the same signs. The final conv feeds tanh."""
    return {n for n in names if n.endswith(".bias") and (n == "linear.bias" or ".conv" in n)}


def parameter_names() -> dict[str, set[str]]:
    """Which state-dict keys of G and D are parameters (Adam moves them), not buffers."""
    models = official_models(official_config("FT"), start_state())
    return {"G": {name for name, _ in models.G.named_parameters()},
            "D": {name for name, _ in models.D.named_parameters()}}


def adam_step_bound(t: int) -> float:
    """The largest step Adam with beta1 = 0 can take at its step t, whatever the gradient g_t: the
    step is lr * g_t / (sqrt(v_t / (1 - beta2^t)) + eps) and v_t >= (1 - beta2) * g_t^2, so its
    size is at most lr * sqrt((1 - beta2^t) / (1 - beta2)): lr at t = 1, about lr * sqrt(t)
    early on."""
    config = OFFICIAL["config"]
    assert config["G_lr"] == config["D_lr"] and config["G_B2"] == config["D_B2"]
    beta2 = config["G_B2"]
    return config["G_lr"] * math.sqrt((1 - beta2 ** t) / (1 - beta2))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm())) if a.norm() > 0 and b.norm() > 0 else 0.0


def violations_beyond_rounding_noise(ours: list, official_after: dict) -> list[tuple]:
    """The FT oracle, derived from the mechanism rather than from one machine. Rounding (summation
    order, vector width, thread count) differs between CPUs, and in FT the method amplifies it: G's
    BN-fed biases (bn_fed_biases) have a true gradient of 0, and Adam with beta1 = 0 turns a
    gradient of any size, noise included, into a step of up to adam_step_bound(t) its way; so does
    every element whose gradient is at the noise level. Those moves change the next forward pass, so
    from iteration 2 on no two CPUs agree element by element (an AVX2-only CPU: G_loss of iteration
    2 4e-4 relative from the recording; at iteration 3, elements up to 5 lr apart). What holds on
    every CPU after every recorded iteration t, for each tensor of G and D, parameters and buffers:
    - frozen is frozen: a tensor the official run left as it started is bit-identical in ours;
    - a parameter's element is within 2 * sum(adam_step_bound(s), s <= t) of the official one: each
      run moved it by at most that sum;
    - the update (after minus start) points the official way, cosine >= 0.9. Noise flips a minority
      of elements; for flipped steps of one size the cosine is 1 - 2p with p the share flipped, so
      0.9 allows 5 %. A tensor trained that should be frozen, or frozen that should train, has
      cosine 0. (Measured at t = 3: at least 0.979, on AVX-512 at 2 threads and on AVX2 at 1.)
      The BN-fed biases are exempt: their official update is itself noise.
    Returns (t, model, key, what) for each tensor that breaks a rule; the losses are checked apart,
    teacher-forced (teacher_forced_losses)."""
    start, parameters, found = start_state(), parameter_names(), []
    for t, official in official_after.items():
        bound = 2 * sum(adam_step_bound(s) for s in range(1, t + 1))
        for model, state in zip(("G", "D"), ours[t - 1][1:]):
            noisy = bn_fed_biases(state) if model == "G" else set()
            for key, expected in official[model].items():
                now, before = state[key], start[model][key]
                if not expected.is_floating_point() or torch.equal(expected, before):
                    if not torch.equal(now, expected):
                        found.append((t, model, key, "frozen, but moved"))
                    continue
                slack = 2 ** -22 * expected.abs().max()  # float32's rounding of the values
                if key in parameters[model] and (now - expected).abs().max() > bound + slack:
                    found.append((t, model, key, "beyond Adam's step bound"))
                if key not in noisy and cosine(now - before, expected - before) < 0.9:
                    found.append((t, model, key, "update points elsewhere"))
    return found


def test_the_fp32_BN_step_reproduces_the_official_iterations(monkeypatch):
    """BN trains only the propagation path and all of D; nothing it trains feeds a BatchNorm with a
    true gradient of 0, so rounding stays rounding: every loss and every element of G and D matches
    the official iterations on every CPU measured (AVX2, AVX-512, AMX; 1 and 2 threads)."""
    ours = run_official_iterations("BN", monkeypatch)
    for i, official_losses in enumerate(OFFICIAL["BN"]["losses"]):
        for name in LOSSES:
            assert ours[i][0][name] == pytest.approx(official_losses[name], rel=1e-4, abs=1e-5)
    for itr, official in OFFICIAL["BN"]["after"].items():
        for model, state in zip(("G", "D"), ours[itr - 1][1:]):
            for key, expected in official[model].items():
                diff = (state[key].float() - expected.float()).abs().max().item()
                assert diff <= 1e-5, (itr, model, key, diff)


def test_the_fp32_FT_step_reproduces_the_official_iterations_up_to_rounding_noise(monkeypatch):
    ours = run_official_iterations("FT", monkeypatch)
    assert violations_beyond_rounding_noise(ours, OFFICIAL["FT"]["after"]) == []


def test_the_fp32_FT_losses_are_the_official_ones_from_the_official_state(monkeypatch):
    """Teacher-forced, every iteration's losses agree to one forward pass of rounding (rel 1e-5) on
    any CPU: the noise that Adam amplifies (violations_beyond_rounding_noise) gets no step to
    grow."""
    pairs = teacher_forced_losses("FT", monkeypatch)
    assert len(pairs) == 3
    for t, (ours, official) in enumerate(pairs, start=1):
        for name in LOSSES:
            assert ours[name] == pytest.approx(official[name], rel=1e-5, abs=1e-6), (t, name)


def test_a_wrongly_trained_tensor_would_be_caught(monkeypatch):
    """The oracles have teeth. BN trained with FT's parameter set moves the frozen conv weights by
    about lr in nearly every element (far beyond the exact BN test's 1e-5), and the FT oracle names
    them frozen-but-moved and the untrained combination weights as pointing elsewhere; FT trained
    with BN's parameter set is caught the other way round."""
    BN, FT = stages.STAGES["BN"], stages.STAGES["FT"]
    monkeypatch.setitem(stages.STAGES, "BN", dataclasses.replace(BN, trains=FT.trains))
    BN_with_FT_set = run_official_iterations("BN", monkeypatch)
    official = OFFICIAL["BN"]["after"][1]["G"]["blocks.0.0.conv1.weight"]
    moved = (BN_with_FT_set[0][1]["blocks.0.0.conv1.weight"] - official).abs()
    assert (moved > OFFICIAL["config"]["G_lr"] / 2).float().mean() > 0.5
    caught = violations_beyond_rounding_noise(BN_with_FT_set, OFFICIAL["BN"]["after"])
    assert (1, "G", "blocks.0.0.conv1.weight", "frozen, but moved") in caught
    assert (3, "G", "blocks.0.0.bn1.comb_layer_g.weight", "update points elsewhere") in caught
    monkeypatch.setitem(stages.STAGES, "FT", dataclasses.replace(FT, trains=BN.trains))
    FT_with_BN_set = run_official_iterations("FT", monkeypatch)
    caught = violations_beyond_rounding_noise(FT_with_BN_set, OFFICIAL["FT"]["after"])
    assert (3, "G", "blocks.0.0.conv1.weight", "update points elsewhere") in caught


def test_bf16_autocast_trains_what_the_official_fp32_iteration_trains_the_same_way(monkeypatch):
    """bf16 (an option, not the fixture's path) keeps 8 bits of mantissa, 2^16 times coarser than
    fp32, so many more gradient elements sit at its noise level and Adam's first step (+-lr) flips
    their sign. After one BN iteration the parameters the official run left alone are untouched, and
    every trained tensor's update still points the official way: cosine >= 0.25, well under half
    of its elements flipped (measured: at least 0.5, native and emulated bf16); a tensor trained
    wrongly or not at all has cosine 0. Buffers (BN statistics of bf16 activations, SN estimates of
    bf16-trained weights) are not trained: not compared."""
    ours = run_official_iterations("BN", monkeypatch, official_numerics=False, amp="bf16")[0]
    start, official, parameters = start_state(), OFFICIAL["BN"]["after"][1], parameter_names()
    for model, state in zip(("G", "D"), ours[1:]):
        for key in parameters[model]:
            before, expected = start[model][key], official[model][key]
            if torch.equal(expected, before):
                assert torch.equal(state[key], before), (model, key)
            elif not (model == "G" and bn_fed_biases([key])):
                assert cosine(state[key] - before, expected - before) >= 0.25, (model, key)


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["channels_last", "fused_resampling"])
@pytest.mark.parametrize("stage", ["BN", "FT"])
def test_the_fp32_speed_options_repeat_the_official_iterations_up_to_rounding(stage, flag,
                                                                               monkeypatch):
    """--channels_last and --fused_resampling compute the same function in another order, so the FT
    oracle holds in both stages (in BN too: the changed order moves a few elements of the prior by
    Adam's step either way), and teacher-forced losses agree to one pass of rounding (1e-5 relative;
    BN has only iteration 1 recorded as a start)."""
    options = {"official_numerics": False, "amp": "none", "channels_last": "off",
               "fused_resampling": "off", flag: "on"}
    pairs = teacher_forced_losses(stage, monkeypatch, **options)
    for t, (ours, official) in enumerate(pairs, start=1):
        for name in LOSSES:
            assert ours[name] == pytest.approx(official[name], rel=1e-5, abs=1e-6), (stage, t, name)
    ours = run_official_iterations(stage, monkeypatch, **options)
    assert violations_beyond_rounding_noise(ours, OFFICIAL[stage]["after"]) == []


def evaluated(state: dict, itr: int, fid: float, config: dict) -> bool:
    """Iteration itr evaluated to `fid`, as train_fns.evaluate_and_keep_best records it; whether
    --patience stops."""
    state["itr"] = itr
    train_fns.record_evaluation(state, {"FID": fid}, config)
    return train_fns.out_of_patience(state, config)


def test_patience_counts_the_evaluations_since_the_best_each_once_and_anew_for_a_new_stage():
    import run_start
    config = {**vars(flags.prepare_parser().parse_args([])), "which_best": "FID", "patience": 2}
    state = run_start.new_run_state(config)
    stops = [evaluated(state, itr, fid, config) for itr, fid in ((1, 5.0), (2, 6.0), (3, 4.0),
                                                                  (4, 4.0), (5, 4.5))]
    assert stops == [False, False, False, False, True]  # equal is no improvement
    assert "the best, FID 4, is iteration 3's" in train_fns.why_stopped(state, config)
    evaluated(state, 5, 4.5, config)  # replayed (a set saved after it holds it): counted once
    assert train_fns.evaluations_since_best(state, "FID") == 2
    new_stage = run_start.resumed_state(state, {**config, "stage": "FT"})  # FT after BN
    assert not train_fns.out_of_patience(new_stage, config)
    assert not evaluated(new_stage, 6, 9.0, config)  # its first evaluation is its best
    old = {key: value for key, value in state.items() if key != "since_best"}  # before the count
    assert not train_fns.out_of_patience(old, config)
    assert not evaluated(old, 6, 5.0, config) and evaluated(old, 7, 5.0, config)
    assert "an iteration before the count" in train_fns.why_stopped(old, config)


def ortho_penalty_gradient(weight: torch.Tensor, strength: float) -> torch.Tensor:
    """BigGAN's modified orthogonal regularization as a loss, strength * 1/2 ||W W^T (1 - I)||^2
    over the weight as a matrix of its output rows, differentiated by autograd."""
    w = weight.detach().double().reshape(weight.shape[0], -1).requires_grad_()
    gram = w @ w.t() * (1 - torch.eye(w.shape[0], dtype=torch.float64))
    (strength * 0.5 * gram.square().sum()).backward()
    return w.grad.reshape(weight.shape)


def test_ortho_adds_the_gradient_of_the_off_diagonal_penalty_to_every_weight_it_may_touch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.Linear(4, 6),
                                torch.nn.Linear(6, 2)).double()
    skipped, frozen = model[2].weight, model[1].bias  # blacklisted; a 1-D parameter
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    model[1].weight.grad = None  # no gradient: nothing to add to
    before = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    train_fns.ortho_(model, strength=1e-2, blacklist=(skipped,))
    added = {name: p.grad - before[name] for name, p in model.named_parameters()
             if p.grad is not None}
    assert torch.allclose(added["0.weight"], ortho_penalty_gradient(model[0].weight, 1e-2),
                          rtol=1e-9, atol=0)  # the added part of a gradient near 1
    assert model[1].weight.grad is None
    assert not added["2.weight"].any() and not added["1.bias"].any() and frozen.grad is not None


def test_ortho_of_a_channels_last_kernel_equals_the_contiguous_ones_and_keeps_its_layout():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3)
    last = torch.nn.Conv2d(4, 6, 3).to(memory_format=torch.channels_last)
    last.load_state_dict(conv.state_dict())
    for model in (conv, last):
        model.weight.grad = torch.zeros_like(model.weight)
        train_fns.ortho_(model, strength=1e-2, blacklist=(model.bias,))
    assert last.weight.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(last.weight.grad, conv.weight.grad, rtol=1e-5, atol=1e-7)
    assert torch.allclose(conv.weight.grad.double(), ortho_penalty_gradient(conv.weight, 1e-2),
                          rtol=1e-5, atol=1e-7)
