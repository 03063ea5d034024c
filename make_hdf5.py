"""Cache an image-folder dataset as one HDF5 file, for faster loading: <data_root>/<dataset>.hdf5.

Images are decoded, cropped and resized once, exactly as datasets.py does on the fly, so training
with --hdf5 sees the same pixels. Layout: 'imgs' uint8 [N, 3, R, R], 'labels' int64 [N], attribute
'class_names' (label order). Example:

    python make_hdf5.py --dataset I128 --base_dir base_dir --batch_size 256 --num_workers 8
"""
from __future__ import annotations

import argparse
import os

import h5py
import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import datasets
import flags
import utils


class RawImages(Dataset):
    """Cropped, resized uint8 images and labels: what goes into the cache."""

    def __init__(self, folder: datasets.ImageFolderDataset):
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.folder.read(index)


def write_hdf5(data: datasets.ImageFolderDataset, path: str, batch_size: int, num_workers: int,
               chunk_size: int, compression: str | None) -> None:
    """The cache, written atomically: a crash never leaves half a cache."""
    n, res = len(data), data.resolution

    def fill(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["class_names"] = np.array(data.classes, dtype=h5py.string_dtype())
            imgs = f.create_dataset("imgs", (n, 3, res, res), dtype="uint8",
                                    chunks=(min(chunk_size, n), 3, res, res),
                                    compression=compression)
            labels = f.create_dataset("labels", (n,), dtype="int64",
                                      chunks=(min(chunk_size, n),), compression=compression)
            loader = DataLoader(RawImages(data), batch_size=batch_size, num_workers=num_workers)
            start = 0
            for x, y in tqdm(loader, desc=f"writing {os.path.basename(path)}"):
                imgs[start:start + len(x)] = x.numpy()
                labels[start:start + len(y)] = y.numpy()
                start += len(x)

    utils.replace_atomically(path, fill)


def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False,
                                     description="Cache an image-folder dataset as HDF5.")
    parser.add_argument("--dataset", required=True, type=datasets.dataset_name,
                        help="a name of datasets.DATASETS or a folder under the data root")
    parser.add_argument("--resolution", type=int, default=0, choices=[0, *flags.RESOLUTIONS],
                        help="image size, for a folder without dataset.json (default: the "
                             "dataset's)")
    parser.add_argument("--base_dir", default="base_dir",
                        help="project folder; data is in <base_dir>/data (default: %(default)s)")
    parser.add_argument("--data_root", default=None, help="use this instead of <base_dir>/data")
    parser.add_argument("--batch_size", type=utils.at_least(1), default=256,
                        help="images decoded per step")
    parser.add_argument("--num_workers", type=utils.at_least(0),
                        default=datasets.default_num_workers(),
                        help="decoding processes (default: one per core, 8 at most)")
    parser.add_argument("--chunk_size", type=utils.at_least(1), default=500,
                        help="images per HDF5 chunk")
    parser.add_argument("--compression", action="store_true",
                        help="LZF-compress the cache (smaller, a little slower to read)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    return parser


def main() -> None:
    args = prepare_parser().parse_args()
    data_root = args.data_root or os.path.join(args.base_dir, "data")
    path = datasets.hdf5_path(args.dataset, data_root)
    if os.path.exists(path) and not args.overwrite:
        raise utils.UsageError(f"{path} already exists; pass --overwrite to rebuild it")
    folder = datasets.image_folder_path(args.dataset, data_root)
    spec = datasets.dataset_spec(args.dataset, data_root, args.resolution)
    data = datasets.ImageFolderDataset(folder, spec.resolution, dataset=args.dataset)
    print(datasets.describe_classes(args.dataset, data.classes))
    write_hdf5(data, path, args.batch_size, args.num_workers, args.chunk_size,
               "lzf" if args.compression else None)
    print(f"wrote {len(data)} images to {path}")


if __name__ == "__main__":
    utils.run_main(main)
