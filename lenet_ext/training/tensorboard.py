"""TensorBoard for a training run (train --tensorboard), in RUN/tensorboard: the per-epoch
scalars while it trains, and the F6 embedding of the first test digits at the end."""

import math
import os

import torch

from .. import data
from .loop import Run


def attach(run: Run):
    """The TensorBoard writer of rank 0 (RUN/tensorboard): per-epoch scalars via run.on_epoch."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.path.join(run.run_dir, "tensorboard"))

    def on_epoch(row):
        for key in ("loss", "acc"):
            for split in ("train", "valid", "test"):
                value = row.get(f"{split}_{key}")
                if value is not None and math.isfinite(value):
                    writer.add_scalar(f"{key}/{split}", value, row["epoch"])
        writer.add_scalar("lr", row["lr"], row["epoch"])
        writer.add_scalar("images_per_s", row["images_per_s"], row["epoch"])
        writer.flush()

    run.on_epoch = on_epoch
    return writer


def add_embedding(writer, run: Run, samples: int) -> None:
    """The F6 features of the first test digits, with their labels and a sprite of the digits."""
    test = run.dataset.test
    n = min(samples, len(test))
    with torch.inference_mode():
        run.model.eval()
        features = run.model.features(test.images[:n]).float().cpu()
    pixels = (test.images[:n].float().cpu() * data.STD + data.MEAN).clamp(0, 1)
    classes = run.dataset.classes
    writer.add_embedding(
        features, metadata=[classes[int(c)] for c in test.labels[:n]], label_img=pixels, global_step=run.epoch, tag="f6"
    )
    writer.flush()
