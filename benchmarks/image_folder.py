"""``image_folder`` first open (decode + cache) and reopen against a per-sample PIL loader, in images/s.

One run writes ``--images`` synthetic JPEGs (10 class folders; sides drawn from 200..400
pixels, crops of smooth gradients plus noise, quality 90: photo-like sizes) to a temporary folder,
then times, on the same files, at the same ``--size`` and with the same ``--workers``:

  first open   ``ImageFolder(root, image_size, workers).open("train")`` with an empty cache:
               list, decode every image in a process pool, write the ``.npy`` cache.
  reopen       a new ``ImageFolder`` on the same folder: stat every file, map the cache.
  peer         what torchvision's ``ImageFolder`` + ``Resize(size)`` + ``CenterCrop(size)`` +
               ``PILToTensor`` do per sample, rewritten with PIL (torchvision is not imported):
               ``Image.open().convert("RGB")``, resize the shorter side (bilinear), crop the
               centre, to a uint8 CHW tensor; ``DataLoader(batch_size=256, num_workers=W)``,
               one pass over every image. A per-sample loader pays this every epoch.
  peer+draft   the same with Pillow's JPEG ``draft`` (reduced-scale DCT decoding), which the
               ``image_folder`` decoder uses: separates that trick from the pool and the cache.

Ratios are images/s over the peer's. Run from the repository root:

    .venv/bin/python benchmarks/image_folder.py [--images 3000] [--size 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugins.image_folder.format import ImageFolder  # noqa: E402


def write_jpegs(root: Path, n: int, seed: int = 0) -> None:
    """``n`` JPEGs in 10 class folders: crops of 200..400 pixels a side out of 8 textures
    (smooth gradients plus noise), so files differ while generating them stays quick."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:512, 0:512].astype(np.float32)
    textures = []
    for _ in range(8):
        planes = [127 + 100 * np.sin(x / rng.uniform(20, 80) + y / rng.uniform(20, 80) + rng.uniform(0, 6.28))
                  for _ in range(3)]
        pixels = np.stack(planes, axis=-1) + rng.normal(0, 8, (512, 512, 3)).astype(np.float32)
        textures.append(np.clip(pixels, 0, 255).astype(np.uint8))
    for i in range(n):
        width, height = (int(v) for v in rng.integers(200, 401, 2))
        left, top = (int(v) for v in rng.integers(0, 512 - 400, 2))
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        crop = textures[i % 8][top : top + height, left : left + width]
        Image.fromarray(crop).save(folder / f"{i:05d}.jpg", quality=90)


class PerSample:
    """An ``ImageFolder``-style map dataset: one file decoded, resized and cropped per ``__getitem__``."""

    def __init__(self, files: list[Path], size: int, draft: bool) -> None:
        self.files, self.size, self.draft = files, size, draft

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):  # noqa: ANN204 (a torch tensor)
        import torch

        with Image.open(self.files[i]) as image:
            if self.draft:
                image.draft("RGB", (self.size, self.size))
            image = image.convert("RGB")
            width, height = image.size
            scale = self.size / min(width, height)
            image = image.resize((max(self.size, round(width * scale)), max(self.size, round(height * scale))),
                                 Image.Resampling.BILINEAR)
            left, top = (image.width - self.size) // 2, (image.height - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
            return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())


def peer(files: list[Path], size: int, workers: int, draft: bool) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(PerSample(files, size, draft), batch_size=256, num_workers=workers)
    start = time.perf_counter()
    seen = sum(len(batch) for batch in loader)
    assert seen == len(files)
    return time.perf_counter() - start


def ours(root: Path, cache: Path, size: int, workers: int) -> float:
    start = time.perf_counter()
    split = ImageFolder(str(root), image_size=size, workers=workers, cache_dir=str(cache)).open("train")
    assert split.fields["stim"].shape[1:] == (3, size, size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root, cache = Path(scratch) / "jpegs", Path(scratch) / "cache"
        start = time.perf_counter()
        write_jpegs(root, args.images)
        files = sorted(root.rglob("*.jpg"))
        mb = sum(f.stat().st_size for f in files) / 2**20
        print(f"{len(files)} JPEGs ({mb:.0f} MiB) written in {time.perf_counter() - start:.1f} s; "
              f"size {args.size}, workers {args.workers}")
        peer(files[:64], args.size, 0, False)  # warm the page cache and imports for everyone alike
        rows = {"peer (per-sample PIL, DataLoader)": peer(files, args.size, args.workers, draft=False),
                "peer+draft": peer(files, args.size, args.workers, draft=True),
                "image_folder first open (decode + cache)": ours(root, cache, args.size, args.workers),
                "image_folder reopen (cache)": ours(root, cache, args.size, args.workers)}
        shutil.rmtree(cache)
    base = len(files) / rows["peer (per-sample PIL, DataLoader)"]
    print(f"{'':42s} {'seconds':>9s} {'images/s':>10s} {'vs peer':>8s}")
    for name, seconds in rows.items():
        rate = len(files) / seconds
        print(f"{name:42s} {seconds:9.3f} {rate:10.0f} {rate / base:7.1f}x")


if __name__ == "__main__":
    main()
