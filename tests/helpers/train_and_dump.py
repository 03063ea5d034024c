"""Run train.py's main under torchrun and save this rank's final weights, for test_train_resume.py."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import train  # noqa: E402

out_dir, argv = sys.argv[1], sys.argv[2:]
rank = int(os.environ["RANK"])
result = train.main(argv)
params = lambda model: {name: p.detach() for name, p in model.named_parameters()}
torch.save({"itr": result["state_dict"]["itr"], "G": params(result["G"]), "D": params(result["D"])},
           os.path.join(out_dir, f"rank{rank}.pth"))
