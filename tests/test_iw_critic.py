"""iw_critic.py: the independent Wasserstein critic, on a toy distribution of coloured Gaussian
blobs.

The oracles are outside the critic: images of one distribution differ from each other only by
sampling, and the Wasserstein-1 distance of two sets is at least the distance of their means
(x -> <x, u> with |u| = 1 is 1-Lipschitz, so it is one of the critics W maximises over).
The property tests train for STEPS = 60 instead of the module's 600: every property below held
on 6 seeds of data and critic tried (same distribution |IW| <= 0.09, brightened 13-17, noise
138-163, against mean-distance bounds of 11 and 48), and the three runs take about 4 s of CPU.
"""
import pytest
import torch

import iw_critic
import utils

STEPS = 60
N_IMAGES = 300  # per set: training and evaluation halves of 150


def blobs(n, seed, size=32):
    """n images [n, 3, size, size] in [-1, 1]: one Gaussian blob of random centre, width and colour
    on a black background, with a little pixel noise."""
    g = torch.Generator().manual_seed(seed)
    centre = size / 4 + size / 2 * torch.rand(n, 2, 1, 1, generator=g)
    width = 3 + 3 * torch.rand(n, 1, 1, generator=g)
    colour = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    blob = torch.exp(-((ys - centre[:, 0]) ** 2 + (xs - centre[:, 1]) ** 2) / (2 * width ** 2))
    image = -1 + blob[:, None] * (colour + 1)
    return (image + 0.05 * torch.randn(image.shape, generator=g)).clamp(-1, 1)


def mean_distance(a, b):
    """||E[a] - E[b]||, a lower bound of the Wasserstein-1 distance between the two sets."""
    return (a.mean(0) - b.mean(0)).norm().item()


@pytest.fixture(scope="module")
def sets():
    real = blobs(N_IMAGES, seed=1)
    same = blobs(N_IMAGES, seed=2)  # the same distribution, other draws
    brighter = (blobs(N_IMAGES, seed=3) + 0.2).clamp(-1, 1)  # mildly perturbed
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(4)) * 2 - 1
    return {"real": real, "same": same, "brighter": brighter, "noise": noise}


@pytest.fixture(scope="module")
def iw(sets):
    return {name: iw_critic.independent_wasserstein(sets["real"], sets[name], seed=0, steps=STEPS)
            for name in ("same", "brighter", "noise")}


def test_the_result_names_the_budget_and_the_held_out_images(iw):
    result = iw["same"]
    assert result["critic_steps"] == STEPS
    assert result["n_eval"] == N_IMAGES
    assert result["n_eval_real"] == result["n_eval_fake"] == N_IMAGES // 2
    assert isinstance(result["IW"], float) and isinstance(result["IW_train"], float)


def test_two_samples_of_one_distribution_are_about_0_apart(iw):
    # held-out halves of one distribution differ only by sampling: E[IW] = 0 for any critic.
    # Bound: a tenth of the gap the critic finds to the mildly brightened set (and so far below the
    # 10% of the gap to noise that the noise test's numbers would allow).
    assert abs(iw["same"]["IW"]) < 0.1 * abs(iw["brighter"]["IW"])
    assert abs(iw["same"]["IW"]) < 0.1 * abs(iw["noise"]["IW"])


def test_uniform_noise_is_far_from_real_images(iw, sets):
    # the critic recovers at least half of the provable lower bound on W (about 48 here)
    assert iw["noise"]["IW"] < -0.5 * mean_distance(sets["real"], sets["noise"])


def test_a_mildly_perturbed_set_is_closer_to_0_than_noise_and_still_detected(iw, sets):
    assert abs(iw["same"]["IW"]) < abs(iw["brighter"]["IW"]) < abs(iw["noise"]["IW"])
    # detected: at least half of its mean-shift bound on W (about 11 here)
    assert iw["brighter"]["IW"] < -0.5 * mean_distance(sets["real"], sets["brighter"])


def test_the_same_seed_gives_the_same_number_and_another_seed_another(sets):
    real, fake = sets["real"][:40], sets["brighter"][:40]
    first = iw_critic.independent_wasserstein(real, fake, seed=3, steps=5)
    state = torch.random.get_rng_state()
    assert iw_critic.independent_wasserstein(real, fake, seed=3, steps=5) == first
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    assert iw_critic.independent_wasserstein(real, fake, seed=4, steps=5)["IW"] != first["IW"]


def test_the_number_does_not_depend_on_the_callers_thread_count(sets):
    real, fake = sets["real"][:40], sets["brighter"][:40]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = iw_critic.independent_wasserstein(real, fake, steps=5)
        torch.set_num_threads(3)
        assert iw_critic.independent_wasserstein(real, fake, steps=5) == one
        assert torch.get_num_threads() == 3  # and the caller's setting is restored
    finally:
        torch.set_num_threads(threads)


def test_any_side_from_28_to_64_px_is_taken():
    for size in (28, 64):
        result = iw_critic.independent_wasserstein(blobs(40, 1, size), blobs(40, 2, size), steps=1)
        assert result["n_eval"] == 40


GOOD = torch.zeros(40, 3, 32, 32)


@pytest.mark.parametrize("real, fake, steps, message", [
    (GOOD[:39], GOOD, 1, "at least 40 real images .* got 39"),
    (GOOD, GOOD[:10], 1, "at least 40 generated images"),
    (GOOD, torch.zeros(40, 3, 28, 28), 1,
     r"real images are \(3, 32, 32\) but generated ones are \(3, 28, 28\)"),
    (GOOD, torch.zeros(40, 1, 32, 32), 1,
     r"must be a tensor \[N, 3, H, W\], got \(40, 1, 32, 32\)"),
    (torch.zeros(40, 3, 32, 30), GOOD, 1,
     "32x30 px; the critic takes square images of 28 to 64 px"),
    (torch.zeros(40, 3, 128, 128), GOOD, 1, "128x128 px"),
    (GOOD, torch.full((40, 3, 32, 32), 255.0), 1, r"must be in \[-1, 1\] .* span \[255, 255\]"),
    (GOOD, GOOD, 0, "steps must be at least 1"),
])
def test_bad_inputs_are_one_clear_error(real, fake, steps, message):
    with pytest.raises(utils.UsageError, match=message) as err:
        iw_critic.independent_wasserstein(real, fake, steps=steps)
    assert "\n" not in str(err.value)


def test_the_critic_trains_also_when_the_caller_has_gradients_off():
    real, fake = torch.rand(40, 3, 32, 32) * 2 - 1, torch.zeros(40, 3, 32, 32)
    with torch.no_grad():  # as sample.py samples
        result = iw_critic.independent_wasserstein(real, fake, seed=0, steps=5)
    assert result["IW"] == iw_critic.independent_wasserstein(real, fake, seed=0, steps=5)["IW"]
