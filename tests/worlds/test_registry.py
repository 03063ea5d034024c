"""worlds/registry.py: a study folder's description of its world gives that world back, split and
assets included, and a folder described as another world or split is refused by name."""
import json

import pytest

import utils
from worlds import fashion, registry

SPLIT = ("Shirt", "Sneaker", "Bag")
SPLIT_OLD = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Ankle boot"]


def test_a_split_is_described_by_its_classes_and_its_assets_inside_the_study_folder(tmp_path):
    world = fashion.world(SPLIT, str(tmp_path / "assets"))
    registry.record_study_world(str(tmp_path), world)
    described = json.loads((tmp_path / "world.json").read_text())
    assert described == {"world": "fashion", "new_classes": list(SPLIT), "old_classes": SPLIT_OLD,
                         "assets": "assets"}
    again = registry.study_world(str(tmp_path))
    assert again.new_classes == SPLIT and list(again.old_classes) == SPLIT_OLD
    assert again.source == str(tmp_path / "assets" / "fashion_source")


def test_a_moved_study_folder_keeps_its_assets(tmp_path):
    study = tmp_path / "study"
    registry.record_study_world(str(study), fashion.world(SPLIT, str(study / "assets")))
    study.rename(tmp_path / "moved")
    moved = registry.study_world(str(tmp_path / "moved"))
    assert moved.source == str(tmp_path / "moved" / "assets" / "fashion_source")


@pytest.mark.parametrize("name", registry.NAMES)
def test_a_shipped_world_is_described_without_a_path_and_read_back_as_itself(tmp_path, name):
    registry.record_study_world(str(tmp_path), registry.get(name))
    assert json.loads((tmp_path / "world.json").read_text())["assets"] is None
    assert registry.study_world(str(tmp_path)) is registry.get(name)


def test_the_default_split_is_pullover_coat_and_ankle_boot(tmp_path):
    described = registry.description(registry.get("fashion"), str(tmp_path))
    assert described["new_classes"] == ["Pullover", "Coat", "Ankle boot"]
    assert described["old_classes"] == ["T-shirt/top", "Trouser", "Dress", "Sandal", "Shirt",
                                        "Sneaker", "Bag"]


def test_a_study_folder_of_another_split_is_refused_naming_the_flags_of_both(tmp_path):
    registry.record_study_world(str(tmp_path), registry.get("fashion"))
    before = (tmp_path / "world.json").read_text()
    with pytest.raises(utils.UsageError) as err:
        registry.record_study_world(str(tmp_path), fashion.world(SPLIT, str(tmp_path / "assets")))
    message = str(err.value)
    assert "--world fashion" in message and "--new Shirt,Sneaker,Bag" in message
    assert "--out" in message
    assert (tmp_path / "world.json").read_text() == before


def test_the_same_split_named_in_another_order_is_the_same_study(tmp_path):
    registry.record_study_world(str(tmp_path), fashion.world(SPLIT, str(tmp_path / "assets")))
    registry.check_study_world(str(tmp_path), fashion.world(SPLIT[::-1], str(tmp_path / "assets")))


def test_a_description_naming_classes_its_world_does_not_have_is_refused(tmp_path):
    (tmp_path / "world.json").write_text(json.dumps({"world": "toy", "new_classes": list(SPLIT),
                                                     "old_classes": SPLIT_OLD, "assets": None}))
    with pytest.raises(utils.UsageError, match="describes classes the toy world does not have"):
        registry.study_world(str(tmp_path))


def test_a_study_folder_that_is_not_there_is_refused_by_name(tmp_path):
    with pytest.raises(utils.UsageError, match="no such folder"):
        registry.study_world(str(tmp_path / "nothing"))
