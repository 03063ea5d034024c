"""worlds/__init__.py, as a specification: a source experiment is published as a source model folder
(G.pth, D.pth, config.json) that train.py reads as it reads BigGAN-PyTorch's pretrained weights,
from the set asked for: the latest, or the best by the run's --which_best."""
import json
import os

import torch

import checkpoints
import worlds


def weights_of(itr: int, sign: int) -> dict:
    return {"w": torch.full((2, 2), sign * float(itr))}


def save_run(folder: str, fids: dict[int, float]) -> None:
    """A pretraining's sets: the latest at the last iteration, a best set at each iteration whose
    FID improved (as train_fns.evaluate_and_keep_best keeps them), each recording its FID."""
    best, slot = float("inf"), 0
    for itr, fid in fids.items():
        best = min(best, fid)
        state = {"itr": itr, "best_FID": best, "metrics": {"FID": fid},
                 "config": {"which_best": "FID"}}
        objects = {"G": weights_of(itr, 1), "D": weights_of(itr, -1), "G_ema": weights_of(itr, 2),
                   "state_dict": state}
        if fid == best:
            checkpoints.save_set(folder, objects, itr, f"best{slot % 2}")
            slot += 1
        checkpoints.save_set(folder, objects, itr)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"G_ch": 16, "data_root": "/machine/data", "inception_weights": ""}, f)


def published(out: str) -> tuple[float, float]:
    return (torch.load(os.path.join(out, "G.pth"))["w"][0, 0].item(),
            torch.load(os.path.join(out, "D.pth"))["w"][0, 0].item())


def test_latest_is_published_by_default(tmp_path):
    run = str(tmp_path / "run")
    save_run(run, {500: 9.0, 1000: 4.0, 1500: 5.0})
    worlds.publish_source(run, str(tmp_path / "source"))
    assert published(str(tmp_path / "source")) == (1500.0, -1500.0)


def test_best_publishes_the_set_of_the_lowest_fid_not_the_latest(tmp_path):
    run = str(tmp_path / "run")
    # best slots rotate: best0 = 500, best1 = 1000 (FID 4), best0 = 2000 (FID 3)
    save_run(run, {500: 9.0, 1000: 4.0, 1500: 5.0, 2000: 3.0, 2500: 3.5})
    worlds.publish_source(run, str(tmp_path / "source"), "best")
    assert published(str(tmp_path / "source")) == (2000.0, -2000.0)
    with open(tmp_path / "source" / "config.json") as f:
        assert json.load(f)["data_root"] == ""  # the machine's roots are blanked


def test_the_moving_average_is_published_as_G_when_asked(tmp_path):
    run = str(tmp_path / "run")
    save_run(run, {500: 9.0, 1000: 4.0})
    worlds.publish_source(run, str(tmp_path / "source"), generator="G_ema")
    assert published(str(tmp_path / "source")) == (2000.0, -1000.0)
