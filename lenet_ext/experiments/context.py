"""What every experiment shares: the command's settings, the device, the experiment's folder,
the datasets it loads (once each), and its training runs through the one training path
(loop.Run), each in FOLDER/runs/NAME: reused if finished, resumed if interrupted."""

import argparse
import os
import time
from typing import Callable, Dict, Tuple

import torch

from .. import data
from ..training import runs
from ..training.config import TrainConfig
from ..training.loop import Run
from ..training.resume import load_resume_state


class Context:
    def __init__(self, args: argparse.Namespace, device: torch.device, folder: str, log: Callable[[str], None]):
        self.args, self.device, self.folder = args, device, folder
        self._datasets: Dict[Tuple, data.MNIST] = {}
        shown = set()

        def once(message: str) -> None:  # the data's notices come once, not once per split
            if message not in shown:
                shown.add(message)
                log(message)

        self.log = once

    def config(self, **overrides) -> TrainConfig:
        """The default recipe (train's defaults) with the command's --epochs/--data-dir and overrides."""
        config = TrainConfig(data_dir=self.args.data_dir)
        if self.args.epochs is not None:
            config = config.replace(epochs=self.args.epochs)
        return config.replace(**overrides).validate()

    def dataset(self, config: TrainConfig) -> data.MNIST:
        key = (config.dataset, config.data_dir, config.valid_size, config.seed)
        if key not in self._datasets:
            self._datasets[key] = data.load(
                config.dataset, config.data_dir, config.valid_size, config.seed, log=self.log
            )
        return self._datasets[key]

    def header(self) -> str:
        """The head of results.md: the command, the data, the device and versions."""
        command = "python -m lenet_ext.experiments " + " ".join(self.args.argv)
        return (
            f"`{command}`\n\n{self.dataset(self.config()).describe()}; device {self.device}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads.\n\n"
        )

    def train(self, name: str, config: TrainConfig) -> Run:
        """A trained run of config in FOLDER/runs/name: reused if it finished there with these
        settings, resumed if it was interrupted, else trained from the start."""
        run_dir = os.path.join(self.folder, "runs", name)
        dataset = self.dataset(config)
        last = os.path.join(run_dir, "last.pt")
        state = None
        if os.path.exists(last):
            state = load_resume_state(last)
            if state["config"] != config or state["data"].get("fingerprint") != dataset.fingerprint:
                raise runs.RunFolderError(
                    f"{run_dir}: holds a run with other settings or data; give another --out, or remove that folder"
                )
        claim = runs.claim(run_dir, new=state is None, flag="run folder")
        try:
            run = Run(config, run_dir, self.device, dataset, log=lambda *a, **k: None)
            if state is not None:
                run.restore(state)
            start = time.perf_counter()
            finished = run.epoch == config.epochs
            runs.write_summary(run_dir, run.fit())
            self.log(
                f"  {name}: {'reused' if finished else f'trained in {time.perf_counter() - start:.0f} s'}; "
                f"test accuracy {run.history[-1]['test_acc']:.4f}"
            )
        finally:
            claim.release()
        return run
