"""losses.py: the hinge loss and cGANTransfer's penalties, per parameter tensor as the official
code."""
import torch

import losses


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    loss_real, loss_fake = losses.discriminator_loss(fake, real)
    assert torch.isclose(loss_real, torch.tensor(0.25)) and torch.isclose(loss_fake,
                                                                          torch.tensor(0.75))
    assert torch.isclose(losses.generator_loss(fake), torch.tensor(0.75))


def test_penalties_sum_scaled_per_tensor_means():
    a, b = torch.tensor([1.0, -3.0]), torch.tensor([[2.0]])
    assert torch.isclose(losses.combination_l1([a, b], 0.5), torch.tensor(0.5 * 2.0 + 0.5 * 2.0))
    assert torch.isclose(losses.residual_l2([a, b], 0.1), torch.tensor(0.1 * 5.0 + 0.1 * 4.0))
    assert losses.combination_l1([a], 0.0) == 0.0
