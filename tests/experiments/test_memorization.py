"""experiments/memorization.py: the distance of samples to their nearest training image of the same
class, against fresh real images of the class."""
import pytest
import torch

from experiments import memorization


def test_a_copy_of_a_training_image_is_at_distance_zero_and_others_at_their_rms_pixel_distance():
    train = torch.stack([torch.full((3, 4, 4), -1.0), torch.full((3, 4, 4), 1.0)])  # black, white
    labels = torch.tensor([0, 0])
    grey = torch.zeros(1, 3, 4, 4)  # 0.5 in [0, 1] pixels: 0.5 from both
    distances = memorization.nearest_distances(torch.cat([train[:1], grey]), torch.tensor([0, 0]),
                                               train, labels)
    assert distances.tolist() == pytest.approx([0.0, 0.5])


def test_only_training_images_of_the_samples_own_class_count():
    train = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    sample = torch.zeros(1, 3, 2, 2)  # a copy of class 0's image, offered as class 1
    distance = memorization.nearest_distances(sample, torch.tensor([1]), train,
                                              torch.tensor([0, 1]))
    assert distance.item() == pytest.approx(0.5)  # |0 - 1| / 2 in [0, 1] units


def test_a_class_without_training_images_is_an_error():
    with pytest.raises(ValueError, match="class 1 has samples but no training images"):
        memorization.nearest_distances(torch.zeros(1, 3, 2, 2), torch.tensor([1]),
                                       torch.zeros(1, 3, 2, 2), torch.tensor([0]))


def test_copies_of_the_training_set_give_a_ratio_near_zero_and_fresh_draws_a_ratio_near_one():
    torch.manual_seed(0)
    train, labels = torch.rand(20, 3, 8, 8) * 2 - 1, torch.arange(2).repeat(10)
    fresh, fresh_labels = torch.rand(40, 3, 8, 8) * 2 - 1, torch.arange(2).repeat(20)
    copies = memorization.memorization_metrics(train, labels, fresh, fresh_labels, train, labels)
    assert copies["NN_dist"] == 0 and copies["NN_ratio"] == 0
    other = torch.rand(40, 3, 8, 8) * 2 - 1  # drawn like the real images, copying none
    learned = memorization.memorization_metrics(other, fresh_labels, fresh, fresh_labels, train,
                                                labels)
    assert learned["NN_ratio"] == pytest.approx(1.0, abs=0.05)
