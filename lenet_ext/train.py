"""Train LeNet-5 on MNIST with our kernels (--impl ext) or the torch.nn reference (--impl torch),
then write the study of the run (loss curves, failures, t-SNE, conv1 maps, report.html).

    python -m lenet_ext.train                               # defaults: >= 99.2% test accuracy on MNIST
    python -m lenet_ext.train --data-dir ~/data/mnist --impl torch --epochs 5
    python -m lenet_ext.train --resume runs/20261126-120000  # continue an interrupted run
    torchrun --nproc_per_node=2 -m lenet_ext.train           # data-parallel over 2 processes

Under torchrun (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (gloo on the CPU,
NCCL on CUDA). --batch-size is the global batch: each process takes its slice of every batch,
so the run follows the same trajectory as one process with the same seed, and the learning
rate needs no rescaling when the number of processes changes.

The loop keeps everything on the training device: the images padded once for the random shifts,
each batch gathered by one index_select into preallocated buffers, the loss and accuracy summed
on the device and read a few times per epoch without stalling it. On CUDA the training step is
captured once as a CUDA graph and replayed (--cuda-graph, on by default there).

The run folder (--out, default runs/<timestamp>) is claimed for the run's life (a second run
into it fails at once); it gets metrics.jsonl and metrics.csv (one row per epoch), best.pt
(lowest validation loss), last.pt (with optimizer state, for --resume), summary.json (with the
time to --target-acc), and the study's files.
"""
import argparse
import copy
import dataclasses
import datetime
from dataclasses import dataclass
import math
import os
import platform
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

import lenet_ext

from . import checkpoint, cli, data
from .analysis import MIN_TSNE_SAMPLES
from .errors import UserError
from .models import C5_KINDS, IMPLS, LeNet5, model_options


class TrainingError(UserError, RuntimeError):
    """The run cannot go on (a NaN loss, say); the last good checkpoint is kept."""


# Flags that may be given with --resume: they change where or how the run computes, not what it
# computes (--data-dir must hold the same data: checked by its fingerprint). Any other flag with
# --resume is an error: a resumed run continues with the settings it was started with.
RESUME_OVERRIDES = ("data_dir", "device", "threads", "no_plots", "cuda_graph", "tensorboard")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lenet_ext.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=sorted(data.DATASETS), help="dataset (default: mnist)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the four IDX files (default: the cache, else download, else the embedded "
                        "5,000 digits)")
    p.add_argument("--impl", default="ext", choices=IMPLS, help="our kernels or the torch.nn reference "
                   "(default: ext)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N; auto: cuda when a GPU (and, for "
                   "--impl ext, our CUDA kernels) is there (default: auto)")
    p.add_argument("--epochs", type=int, default=20, help="number of epochs (default: 20)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size; under torchrun the global "
                   "batch, split between the processes (default: 64)")
    p.add_argument("--test-batch-size", type=int, default=1000, help="evaluation batch size (default: 1000)")
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate of the one-cycle schedule "
                   "(default: 0.01)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"], help="optimizer (default: adam)")
    p.add_argument("--shift", type=int, default=2, help="augmentation: random shifts of up to this many "
                   "pixels, 0 to turn off (default: 2)")
    p.add_argument("--valid-size", type=int, default=None, help="training images held out for validation "
                   f"(default: {data.DEFAULT_VALID:,}; {data.EMBEDDED_VALID} on the embedded digits)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default: runs/<timestamp>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR|last.pt",
                   help="continue a run from its last.pt, with the settings it was started with")
    p.add_argument("--target-acc", type=float, default=0.99, help="test accuracy whose first epoch and training "
                   "time are reported (default: 0.99)")
    p.add_argument("--stop-at-target", action="store_true", help="end the run at the first epoch that reaches "
                   "--target-acc")
    p.add_argument("--cuda-graph", default="auto", choices=["auto", "on", "off"],
                   help="capture the training step as a CUDA graph and replay it; auto: on for CUDA in one "
                        "process (default: auto)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars per epoch and the "
                   "F6 embedding at the end into RUN/tensorboard (needs the tensorboard package)")
    p.add_argument("--no-bias", dest="bias", action="store_false",
                   help="study variant: no biases in f6 and the output layer")
    p.add_argument("--c5", default="conv", choices=C5_KINDS,
                   help="study variant: linear = s4 flattened into a 400->120 linear layer (default: conv)")
    p.add_argument("--dry-run", action="store_true", help="one epoch of two batches, to check the setup")
    p.add_argument("--no-plots", action="store_true", help="skip the study at the end")
    p.add_argument("--tsne-samples", type=int, default=2000, help="test images in the t-SNE (default: 2000)")
    return p


def given_flags(argv) -> List[str]:
    """The dest names of the flags given explicitly on the command line."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return sorted(vars(parser.parse_args(argv)))


def validate_config(config: Dict[str, Any]) -> None:
    """UserError-free check of a run's settings (from the command line or a checkpoint): ValueError
    with the flag's name and what was expected."""
    def need(ok, message):
        if not ok:
            raise ValueError(message)

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)
    for name in ("epochs", "batch_size", "test_batch_size", "tsne_samples", "seed"):
        need(is_int(config.get(name)), f"--{name.replace('_', '-')} must be an integer, got {config.get(name)!r}")
    for name in ("epochs", "batch_size", "test_batch_size"):
        need(config[name] >= 1, f"--{name.replace('_', '-')} must be >= 1, got {config[name]}")
    need(config["tsne_samples"] >= MIN_TSNE_SAMPLES,
         f"--tsne-samples must be >= {MIN_TSNE_SAMPLES} (t-SNE needs more points than its perplexity), "
         f"got {config['tsne_samples']}")
    lr = config.get("lr")
    need(isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0,
         f"--lr must be a positive number, got {lr}")
    need(is_int(config.get("shift")) and 0 <= config["shift"] <= 8, f"--shift must be in 0..8, got {config.get('shift')}")
    valid = config.get("valid_size")
    need(valid is None or (is_int(valid) and valid >= 0), f"--valid-size must be >= 0, got {valid}")
    target = config.get("target_acc", 0.99)
    need(isinstance(target, (int, float)) and not isinstance(target, bool) and 0 < target <= 1,
         f"--target-acc must be in (0, 1], got {target}")
    need(config.get("dataset") in data.DATASETS, f"--dataset must be one of {sorted(data.DATASETS)}")
    need(config.get("impl") in IMPLS, f"--impl must be one of {IMPLS}, got {config.get('impl')!r}")
    need(config.get("optimizer") in ("adam", "adamw", "sgd"), f"--optimizer {config.get('optimizer')!r} is unknown")
    need(config.get("data_dir") is None or isinstance(config["data_dir"], str), "--data-dir must be a path")
    model_options(config)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, argv=None) -> None:
    if args.resume is not None:
        extra = [f for f in given_flags(argv) if f not in RESUME_OVERRIDES + ("resume",)]
        if extra:
            parser.error(f"--resume continues a run with the settings it was started with: "
                         f"{', '.join('--' + f.replace('_', '-') for f in extra)} cannot be given with it "
                         f"(allowed: {', '.join('--' + f.replace('_', '-') for f in RESUME_OVERRIDES)})")
        if args.out is not None:
            parser.error("--resume writes into the run's own folder: --out cannot be given with it")
    else:
        if args.dry_run and "epochs" in given_flags(argv):
            parser.error("--dry-run runs one epoch of two batches: --epochs cannot be given with it")
        try:
            validate_config(config_from_args(args))
        except ValueError as exc:
            parser.error(str(exc))
    if args.threads is not None and not 1 <= args.threads <= 1024:
        parser.error(f"--threads must be in 1..1024, got {args.threads}")
    if args.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            parser.error("--tensorboard needs the tensorboard package: pip install tensorboard "
                         "(or pip install -e \".[tensorboard]\")")


def pick_device(requested: str, impl: str) -> torch.device:
    if requested != "auto":
        return cli.parse_device(requested, impl)
    gpu = torch.cuda.is_available() and (impl == "torch" or "cuda" in lenet_ext.backends())
    return torch.device("cuda" if gpu else "cpu")


class Batches:
    """The training set's batches for one epoch: a seeded order and random shifts of up to `shift`
    pixels, filling the shift with the background value.

    The images are padded by `shift` once; the shifted image at epoch position j is then the
    28 x 28 window of padded image order[j] at offset (oy, ox) = offsets[:, j]: 28 rows of 28
    pixels starting at base[j] + 28 row offsets, base[j] = order[j] * S * S + oy * S + ox (S =
    28 + 2 * shift). A batch is one index_select of those rows from a (rows, 28) view of the flat
    padded images. Everything lives on the training device in buffers allocated once: start()
    refreshes the epoch's base and labels in place (the addresses a CUDA graph captured stay
    valid), fill() writes a batch into preallocated x and y."""

    def __init__(self, split: data.Split, shift: int, batch_size: int):
        images, device = split.images, split.images.device
        n = len(split)
        self.n, self.shift = n, shift
        background = float(images.amin()) if n else 0.0
        padded = F.pad(images, (shift,) * 4, value=background) if shift else images
        self.side = 28 + 2 * shift
        self.padded = padded.reshape(-1).contiguous()
        # Row r of this view is the 28 pixels from flat position r on (overlapping rows, no copy).
        self.rows = self.padded.as_strided((max(self.padded.numel() - 27, 0), 28), (1, 1))
        self.row_offsets = (torch.arange(28, device=device) * self.side).reshape(1, 28)
        self.labels = split.labels
        self.base = torch.zeros(n, dtype=torch.int64, device=device)
        self.epoch_labels = torch.zeros(n, dtype=torch.int64, device=device)
        b = max(1, min(batch_size, n))
        self.index = torch.empty(b, 28, dtype=torch.int64, device=device)
        self.x = torch.empty(b, 1, 28, 28, dtype=images.dtype, device=device)

    def start(self, order: torch.Tensor, offsets: torch.Tensor) -> None:
        """The epoch's order (n,) and offsets (2, n), each in 0..2*shift, on the training device."""
        base = order * (self.side * self.side) + offsets[0] * self.side + offsets[1]
        self.base.copy_(base)
        torch.index_select(self.labels, 0, order, out=self.epoch_labels)

    def gather(self, positions: torch.Tensor):
        """(images, labels) at the epoch positions in the index tensor `positions`, as new tensors
        (what a captured CUDA graph runs: its allocations are its own)."""
        base = self.base.index_select(0, positions)
        x = torch.index_select(self.rows, 0, (base[:, None] + self.row_offsets).reshape(-1))
        return x.view(-1, 1, 28, 28), self.epoch_labels.index_select(0, positions)

    def fill(self, start: int, stop: int):
        """(images, labels) of epoch positions start..stop-1, written into the preallocated buffers."""
        n = stop - start
        index = self.index[:n]
        torch.add(self.base[start:stop, None], self.row_offsets, out=index)
        x = self.x[:n]
        torch.index_select(self.rows, 0, index.view(-1), out=x.view(n * 28, 28))
        return x, self.epoch_labels[start:stop]


class Progress:
    """The epoch's running totals (loss sum, correct predictions), kept on the training device and
    read without stalling it: snapshot() starts an asynchronous copy into pinned host memory (on
    CUDA; a plain copy on the CPU) and latest() returns the newest snapshot whose copy is done.
    Under torchrun the snapshot is all-reduced first (every rank takes every snapshot, so the
    collectives match), and every rank sees the same numbers."""

    def __init__(self, device: torch.device, ranks: "Dist"):
        self.device, self.ranks = device, ranks
        self.totals = torch.zeros(2, dtype=torch.float64, device=device)
        self._pending: List[Tuple[torch.Tensor, Optional[torch.cuda.Event], int]] = []
        self._ready: Optional[Tuple[float, float, int]] = None

    def reset(self) -> None:
        self.totals.zero_()
        self._pending, self._ready = [], None

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, scale: float = 1.0) -> None:
        """Adds a batch: its loss (times scale: the loss sum) and its correct predictions."""
        self.totals[0].add_(loss.detach(), alpha=scale)
        self.totals[1].add_((logits.detach().argmax(1) == labels).sum())

    def snapshot(self, seen: int) -> None:
        """Starts reading the totals after `seen` images (of the global batch, all ranks)."""
        totals = self.ranks.sum(self.totals.clone())
        if self.device.type == "cuda":
            host = torch.empty(2, dtype=torch.float64, pin_memory=True)
            host.copy_(totals, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending.append((host, event, seen))
        else:
            self._pending.append((totals, None, seen))

    def latest(self) -> Optional[Tuple[float, float, int]]:
        """(loss sum, correct, images) of the newest snapshot whose copy has finished, or None."""
        while self._pending and (self._pending[0][1] is None or self._pending[0][1].query()):
            host, _, seen = self._pending.pop(0)
            self._ready = (float(host[0]), float(host[1]), seen)
        return self._ready

    def final(self, seen: int) -> Tuple[float, float, int]:
        """The epoch's totals (waits for the device: the end of the epoch)."""
        loss_sum, correct = self.ranks.sum(self.totals.clone()).tolist()
        self._pending = []
        return loss_sum, correct, seen


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous slice of n items: every item to exactly one rank, sizes within 1."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor


def init_distributed(device_kind: str) -> Dist:
    """Joins the torchrun job if there is one (gloo on the CPU, NCCL on CUDA). Collectives time out
    after $LENET_EXT_DIST_TIMEOUT seconds (default 120), so a lost peer ends the run with an error."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    timeout = datetime.timedelta(seconds=float(os.environ.get("LENET_EXT_DIST_TIMEOUT", "120")))
    dist.init_process_group("nccl" if device_kind == "cuda" else "gloo", timeout=timeout)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@torch.inference_mode()
def evaluate(model: torch.nn.Module, split: data.Split, batch_size: int, ranks: Dist = Dist()):
    """(mean cross-entropy, accuracy) over a split, in batches (the fused inference op for the ext
    model); under torchrun each rank takes its shard and the sums are all-reduced, so every rank
    gets the same numbers. An empty split gives (nan, nan): there is nothing to measure."""
    if len(split) == 0:
        return math.nan, math.nan
    model.eval()
    mine = ranks.shard(len(split))
    images, labels = split.images[mine], split.labels[mine]
    totals = torch.zeros(2, dtype=torch.float64, device=split.images.device)  # loss sum, correct
    for start in range(0, len(labels), batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        logits = model(x)
        totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[1] += (logits.argmax(1) == y).sum()
    loss_sum, correct = ranks.sum(totals).tolist()
    return loss_sum / len(split), correct / len(split)


def make_optimizer(name: str, params, lr: float, device: torch.device):
    """The optimizer, in torch's fused form where it has one for the device (Adam, AdamW and SGD
    on the CPU and CUDA). On CUDA it is capturable, with the learning rate (and Adam's beta1,
    which the one-cycle schedule moves) as device tensors, so that a captured step reads their
    current values."""
    params = list(params)
    cuda = device.type == "cuda"
    extra = {"fused": True} if device.type in ("cpu", "cuda") else {}
    lr_value = torch.tensor(lr, dtype=torch.float32, device=device) if cuda else lr
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr_value, momentum=0.9, nesterov=True, **extra)
    kind = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    if cuda:
        betas = (torch.tensor(0.9, dtype=torch.float32, device=device),
                 torch.tensor(0.999, dtype=torch.float32, device=device))
        return kind(params, lr=lr_value, betas=betas, capturable=True, **extra)
    return kind(params, lr=lr_value, **extra)


def _plain(value):
    """A tensor hyperparameter as a float (for checkpoints: the same format on every device)."""
    return float(value) if isinstance(value, torch.Tensor) else value


class Run:
    """One training run: its settings, data, model, optimizer and history; resumable."""

    def __init__(self, config: Dict[str, Any], run_dir: str, device: torch.device, log=print,
                 ranks: Dist = Dist(), dataset: Optional[data.MNIST] = None, cuda_graph: bool = False):
        self.config, self.run_dir, self.device, self.ranks = config, run_dir, device, ranks
        self.log = log if ranks.main else (lambda *a, **k: None)
        if dataset is None:
            dataset = data.load(config["dataset"], config["data_dir"], config["valid_size"], config["seed"],
                                log=self.log)
        self.dataset = dataset
        if config["dry_run"]:
            self.dataset = dataclasses.replace(
                self.dataset, valid=_head(self.dataset.valid, 256), test=_head(self.dataset.test, 256))
        self.dataset = self.dataset.to(device)
        torch.manual_seed(config["seed"])
        self.model = LeNet5(impl=config["impl"], **model_options(config)).to(device)
        self.net = self.model  # what the training step calls: the model, or DDP around it
        if ranks.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = make_optimizer(config["optimizer"], self.model.parameters(), config["lr"], device)
        self.steps_per_epoch = 2 if config["dry_run"] else math.ceil(len(self.dataset.train) / config["batch_size"])
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=config["lr"], epochs=config["epochs"], steps_per_epoch=self.steps_per_epoch)
        self._device_hyperparameters()
        self.generator = torch.Generator().manual_seed(config["seed"])
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.best = {"valid_loss": math.inf, "epoch": 0}
        self.batches = Batches(self.dataset.train, config["shift"], config["batch_size"])
        self.progress = Progress(device, ranks)
        self.cuda_graph = cuda_graph
        self._graphs: Optional[Dict[int, torch.cuda.CUDAGraph]] = None
        self.on_epoch = None  # called with each epoch's row (TensorBoard)

    # -------------------------------------------------------------------------------- state
    def state(self) -> Dict[str, Any]:
        optimizer = self.optimizer.state_dict()
        for group in optimizer["param_groups"]:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in group:
                    group[key] = _plain(group[key])
            if "betas" in group:
                group["betas"] = tuple(_plain(b) for b in group["betas"])
        scheduler = self.scheduler.state_dict()
        scheduler["_last_lr"] = [_plain(v) for v in scheduler.get("_last_lr", [])]
        scheduler["base_lrs"] = [_plain(v) for v in scheduler.get("base_lrs", [])]
        return {"config": self.config, "epoch": self.epoch, "impl": self.config["impl"],
                "model": self.model.state_dict(), "optimizer": optimizer,
                "scheduler": scheduler, "generator": self.generator.get_state(),
                "history": self.history, "best": self.best, "data": self.data_info(),
                "versions": versions()}

    def restore(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._device_hyperparameters()
        self.generator.set_state(state["generator"])
        self.epoch, self.history, self.best = state["epoch"], list(state["history"]), dict(state["best"])

    def _device_hyperparameters(self) -> None:
        """On CUDA: the learning rate and beta1 as device tensors holding the schedule's current values
        (the schedule writes plain floats; a captured step reads the tensors)."""
        if self.device.type != "cuda":
            return
        if not hasattr(self, "_lr"):
            self._lr = torch.zeros((), dtype=torch.float32, device=self.device)
            self._beta1 = torch.zeros((), dtype=torch.float32, device=self.device)
            self._beta2 = torch.zeros((), dtype=torch.float32, device=self.device)
        for group in self.optimizer.param_groups:
            self._lr.fill_(_plain(group["lr"]))
            group["lr"] = self._lr
            if "betas" in group:
                beta1, beta2 = (_plain(b) for b in group["betas"])
                self._beta1.fill_(beta1)
                self._beta2.fill_(beta2)
                group["betas"] = (self._beta1, self._beta2)

    def data_info(self) -> Dict[str, Any]:
        d = self.dataset
        return {"dataset": d.dataset, "source": d.source, "location": d.location, "train": len(d.train),
                "valid": len(d.valid), "test": len(d.test), "fingerprint": d.fingerprint}

    def save_last(self) -> None:
        if self.ranks.main:
            checkpoint.save(os.path.join(self.run_dir, "last.pt"), self.state())

    # -------------------------------------------------------------------------------- training
    def _step(self, x: torch.Tensor, y: torch.Tensor, share: float) -> None:
        """One training step on (x, y), this rank's part of a global batch; share = this part's
        size / the global batch's, times the number of ranks, so that DDP's averaged gradient is
        the gradient of the global batch's mean loss (share is 1 in one process). The totals
        accumulate on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        (loss if share == 1.0 else loss * share).backward()
        self.optimizer.step()
        self.progress.add(loss, logits, y, float(len(y)))

    def _schedule(self) -> None:
        self.scheduler.step()
        self._device_hyperparameters()

    def _capture(self) -> Dict[int, "torch.cuda.CUDAGraph"]:
        """The training step as CUDA graphs, one per batch size an epoch uses (full batches and the
        last, shorter one), each reading its batch from the epoch's static buffers at a device-side
        position counter. Before capture, one-time initialisations are run by a throwaway copy of
        the model and optimizer on a side stream, and the optimizer's state is created by a step
        with zero gradients and a zero learning rate (its step count then reset): the state of a
        fresh optimizer, so the captured run follows the uncaptured one step for step."""
        b, n = self.config["batch_size"], self.batches.n
        full, tail = (n // b, n % b) if self.steps_per_epoch * b >= n else (self.steps_per_epoch, 0)
        sizes = ([b] if full else []) + ([tail] if tail else [])
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            model = copy.deepcopy(self.model)
            opt = make_optimizer(self.config["optimizer"], model.parameters(), self.config["lr"], self.device)
            for size in sizes:
                for _ in range(2):
                    x, y = self.batches.gather(torch.arange(size, device=self.device))
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x), y).backward()
                    opt.step()
            del model, opt
            if not self.optimizer.state:  # a fresh optimizer (a resumed run already has its state)
                for p in self.model.parameters():
                    p.grad = torch.zeros_like(p)
                lr = float(self._lr)
                self._lr.fill_(0.0)
                self.optimizer.step()
                self._lr.fill_(lr)
                for state in self.optimizer.state.values():
                    if "step" in state:
                        state["step"].zero_()
            self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        self._position = torch.zeros((), dtype=torch.int64, device=self.device)
        arange = torch.arange(b, device=self.device)
        graphs = {}
        for size in sizes:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                if size == b and full:
                    positions = arange + self._position * b
                    self._position.add_(1)
                else:
                    positions = torch.arange(full * b, full * b + size, device=self.device)
                x, y = self.batches.gather(positions)
                self._step(x, y, 1.0)
            graphs[size] = graph
        self.progress.reset()
        return graphs

    def train_epoch(self):
        """One epoch over the training set in a seeded order. Each global batch of --batch-size
        images is split between the ranks; each rank's loss is its share of the batch's mean, so
        DDP's averaged gradient equals the one-process gradient of the whole batch."""
        from tqdm import tqdm
        cfg, ranks, batches = self.config, self.ranks, self.batches
        self.model.train()
        n, b = batches.n, cfg["batch_size"]
        # The epoch's order and shifts, drawn from the run's generator (on the host, so that a seed
        # gives the same run on every device) and sent to the device in one copy.
        order = torch.randperm(n, generator=self.generator)
        offsets = torch.randint(0, 2 * cfg["shift"] + 1, (2, n), generator=self.generator)
        if self.device.type == "cuda":
            order, offsets = (t.pin_memory().to(self.device, non_blocking=True) for t in (order, offsets))
        batches.start(order, offsets)
        if self.cuda_graph and self._graphs is None:
            self._graphs = self._capture()
        self.progress.reset()
        if self._graphs is not None:
            self._position.zero_()
        check_every = max(1, self.steps_per_epoch // 4) if self.device.type == "cuda" else 20
        start = time.perf_counter()
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {self.epoch + 1}/{cfg['epochs']}", unit="batch",
                   leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                   disable=not (ranks.main and sys.stderr.isatty()))
        seen = 0
        for step in bar:
            lo, hi = step * b, min((step + 1) * b, n)
            if self._graphs is not None:
                self._graphs[hi - lo].replay()
            else:
                mine = ranks.shard(hi - lo)
                x, y = batches.fill(lo + mine.start, lo + mine.stop)
                self._step(x, y, len(y) * ranks.world / (hi - lo))
            seen += hi - lo  # images of the global batches so far (all ranks)
            self._schedule()
            if step % check_every == check_every - 1 or step == self.steps_per_epoch - 1:
                self.progress.snapshot(seen)
                latest = self.progress.latest()
                self._check(latest, step)
                if latest is not None:
                    bar.set_postfix(loss=f"{latest[0] / max(latest[2], 1):.4f}")
        bar.close()
        loss_sum, correct, seen_all = self.progress.final(seen)
        self._check((loss_sum, correct, seen_all), self.steps_per_epoch - 1)
        elapsed = time.perf_counter() - start
        return loss_sum / seen_all, correct / seen_all, seen_all / elapsed, elapsed

    def _check(self, totals, step: int) -> None:
        if totals is not None and not math.isfinite(totals[0]):
            raise TrainingError(
                f"the training loss became {totals[0] / max(totals[2], 1)} at epoch {self.epoch + 1} (by step "
                f"{step + 1}): stopping (try a lower --lr than {self.config['lr']}). last.pt holds epoch {self.epoch}.")

    def run_epoch(self) -> Dict[str, Any]:
        """One whole epoch: training, evaluation of the validation and test sets, the checkpoints
        and metrics; returns its metrics row."""
        cfg = self.config
        t0 = time.perf_counter()
        train_loss, train_acc, images_per_s, seconds = self.train_epoch()
        valid_loss, valid_acc = evaluate(self.model, self.dataset.valid, cfg["test_batch_size"], self.ranks)
        test_loss, test_acc = evaluate(self.model, self.dataset.test, cfg["test_batch_size"], self.ranks)
        self.epoch += 1
        row = {"epoch": self.epoch, "train_loss": train_loss, "train_acc": train_acc,
               "valid_loss": valid_loss, "valid_acc": valid_acc, "test_loss": test_loss, "test_acc": test_acc,
               "lr": _plain(self.scheduler.get_last_lr()[0]), "images_per_s": images_per_s, "epoch_s": seconds}
        if valid_loss < self.best["valid_loss"] or len(self.dataset.valid) == 0:
            self.best = {"valid_loss": valid_loss, "epoch": self.epoch}
            if self.ranks.main:
                checkpoint.save(os.path.join(self.run_dir, "best.pt"),
                                {"config": cfg, "epoch": self.epoch, "impl": cfg["impl"],
                                 "model": self.model.state_dict(), "metrics": row, "data": self.data_info(),
                                 "versions": versions()})
        row["wall_s"] = time.perf_counter() - t0  # training, evaluation and the best checkpoint
        self.history.append(row)
        self.save_last()
        if self.ranks.main:
            checkpoint.write_metrics(self.run_dir, self.history)
        valid = "-" if len(self.dataset.valid) == 0 else f"{valid_loss:.4f} acc {valid_acc:.4f}"
        self.log(f"epoch {self.epoch:3d}/{cfg['epochs']}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
                 f"valid loss {valid}  test loss {test_loss:.4f} acc {test_acc:.4f}  {images_per_s:,.0f} img/s")
        if self.on_epoch is not None:
            self.on_epoch(row)
        return row

    def target(self) -> Tuple[Optional[int], Optional[float], Optional[float]]:
        """(first epoch whose test accuracy reached the target, training seconds and wall seconds
        until the end of that epoch), or Nones if no epoch has."""
        target = self.config.get("target_acc", 0.99)
        seconds = wall = 0.0
        for row in self.history:
            seconds += row["epoch_s"]
            wall += row.get("wall_s", row["epoch_s"])
            if row["test_acc"] is not None and row["test_acc"] >= target:
                return row["epoch"], seconds, wall
        return None, None, None

    def fit(self) -> Dict[str, Any]:
        cfg = self.config
        if self.epoch == 0:
            self.save_last()  # a last.pt exists from the start: epoch 0, nothing trained yet
        while self.epoch < cfg["epochs"]:
            if cfg.get("stop_at_target") and self.target()[0] is not None:
                break
            self.run_epoch()
        return self.summary()

    def summary(self) -> Dict[str, Any]:
        last = self.history[-1] if self.history else {}
        best_row = next((r for r in self.history if r["epoch"] == self.best["epoch"]), {})
        reached, seconds, wall = self.target()
        summary = {
            "data": self.data_info(), "impl": self.config["impl"], "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
            else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "processes": self.ranks.world, "config": self.config,
            "cuda_graph": self._graphs is not None, "epochs_done": self.epoch,
            "final": last, "best_epoch": self.best["epoch"], "best": best_row,
            "test_acc": last.get("test_acc"), "best_test_acc": best_row.get("test_acc"),
            "train_seconds": sum(r["epoch_s"] for r in self.history),
            "wall_seconds": sum(r.get("wall_s", r["epoch_s"]) for r in self.history),
            "target_acc": self.config.get("target_acc", 0.99), "reached_target_epoch": reached,
            "seconds_to_target": seconds, "wall_seconds_to_target": wall,
            "stopped_at_target": bool(self.config.get("stop_at_target")) and reached is not None
            and self.epoch < self.config["epochs"],
            "versions": versions(),
        }
        if self.ranks.main:
            checkpoint.atomic_write_text(os.path.join(self.run_dir, "summary.json"), checkpoint.to_json(summary))
        return summary


def _head(split: data.Split, n: int) -> data.Split:
    return data.Split(split.images[:n], split.labels[:n], split.index[:n])


def versions() -> Dict[str, str]:
    return {"lenet_ext": str(lenet_ext.__version__), "torch": str(torch.__version__), "python": platform.python_version()}


CONFIG_KEYS = ("dataset", "data_dir", "impl", "epochs", "batch_size", "test_batch_size", "lr", "optimizer", "shift",
               "valid_size", "seed", "dry_run", "tsne_samples", "bias", "c5", "target_acc", "stop_at_target")
# Settings a run made before they existed did not record: the values it ran with.
CONFIG_DEFAULTS = {"bias": True, "c5": "conv", "target_acc": 0.99, "stop_at_target": False}


def config_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    if config["data_dir"] is not None:
        config["data_dir"] = os.path.abspath(config["data_dir"])
    if config["dry_run"]:
        config["epochs"] = 1
    return config


def resume_path(value: str) -> str:
    return os.path.join(value, "last.pt") if os.path.isdir(value) else value


def load_resume_state(path: str) -> Dict[str, Any]:
    """The checkpoint to resume from, checked: a last.pt with everything a run needs to go on."""
    state = checkpoint.load(path)
    if "optimizer" not in state or "generator" not in state:
        kind = "a best-validation checkpoint" if os.path.basename(path) == "best.pt" else "not a last.pt"
        raise checkpoint.CheckpointError(f"{path}: {kind}: it holds no optimizer and random-generator state to "
                                         f"resume from; give the run folder or its last.pt")
    for key, kind in (("config", dict), ("epoch", int), ("history", list), ("best", dict), ("data", dict),
                      ("scheduler", dict), ("optimizer", dict)):
        if not isinstance(state.get(key), kind):
            raise checkpoint.CheckpointError(f"{path}: its {key!r} entry is missing or not a {kind.__name__}: "
                                             "not a last.pt written by lenet_ext.train")
    config = {**CONFIG_DEFAULTS, **state["config"]}
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise checkpoint.CheckpointError(f"{path}: its settings lack {', '.join(missing)}")
    try:
        validate_config(config)
    except ValueError as exc:
        raise checkpoint.CheckpointError(f"{path}: its settings are invalid ({exc})") from exc
    state["config"] = {k: config[k] for k in CONFIG_KEYS}
    if not 0 <= state["epoch"] <= config["epochs"] or len(state["history"]) != state["epoch"]:
        raise checkpoint.CheckpointError(f"{path}: inconsistent: epoch {state['epoch']} of {config['epochs']} with "
                                         f"{len(state['history'])} epochs of history")
    return state


def _agree(ranks: Dist, value):
    """Rank 0's value, on every rank (a run folder name, an error message)."""
    if ranks.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _claim(ranks: Dist, run_dir: str, new: bool, flag: str):
    """Rank 0 claims the run folder; every rank fails with its message if it could not."""
    folder, problem = None, None
    if ranks.main:
        try:
            folder = checkpoint.claim(run_dir, new=new, flag=flag)
        except checkpoint.RunFolderError as exc:
            problem = str(exc)
    problem = _agree(ranks, problem)
    if problem:
        raise checkpoint.RunFolderError(problem)
    return folder


def use_cuda_graph(choice: str, device: torch.device, ranks: Dist, optimizer: str, log) -> bool:
    """Whether the training step is captured as a CUDA graph: --cuda-graph auto means on CUDA, in
    one process, with Adam or AdamW (SGD's momentum, which the one-cycle schedule moves, is a
    plain float the capture would freeze)."""
    if choice == "off" or device.type != "cuda":
        if choice == "on":
            raise cli.CliError(f"--cuda-graph on needs a CUDA device (training runs on {device})")
        return False
    why = ("torchrun (DDP's gradient all-reduce is not captured)" if ranks.world > 1
           else "--optimizer sgd (its momentum, moved by the schedule, cannot be a device tensor)"
           if optimizer == "sgd" else None)
    if why is not None:
        if choice == "on":
            raise cli.CliError(f"--cuda-graph on is not supported with {why}; use auto or off")
        log(f"cuda graph: off with {why}")
        return False
    return True


def _tensorboard(run: Run):
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


def _tensorboard_embedding(writer, run: Run, samples: int) -> None:
    """The F6 features of the first test digits, with their labels and a sprite of the digits."""
    test = run.dataset.test
    n = min(samples, len(test))
    with torch.inference_mode():
        run.model.eval()
        features = run.model.features(test.images[:n]).float().cpu()
    pixels = (test.images[:n].float().cpu() * data.STD + data.MEAN).clamp(0, 1)
    classes = run.dataset.classes
    writer.add_embedding(features, metadata=[classes[int(c)] for c in test.labels[:n]], label_img=pixels,
                         global_step=run.epoch, tag="f6")
    writer.flush()


def _main_impl(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ranks, folder = Dist(), None
    try:
        state = load_resume_state(resume_path(args.resume)) if args.resume else None
        device = pick_device(args.device, state["config"]["impl"] if state else args.impl)
        ranks = init_distributed(device.type)
        say = print if ranks.main else (lambda *a, **k: None)
        if device.type == "cuda" and ranks.world > 1:
            device = torch.device("cuda", ranks.local_rank)
            torch.cuda.set_device(device)
        graph = use_cuda_graph(args.cuda_graph, device, ranks, (state["config"] if state else vars(args))["optimizer"],
                               say)
        if state is not None:
            config = state["config"]
            run_dir = os.path.dirname(os.path.abspath(resume_path(args.resume)))
            folder = _claim(ranks, run_dir, new=False, flag="--resume")
            state = load_resume_state(resume_path(args.resume))  # again, now that no other run can write it
            dataset = data.load_run_data(state["config"], state["data"], args.data_dir, say)
            if args.data_dir is not None:
                config["data_dir"] = os.path.abspath(args.data_dir)
            run = Run(config, run_dir, device, ranks=ranks, dataset=dataset, cuda_graph=graph)
            run.restore(state)
            say(f"resuming {run_dir} after epoch {run.epoch} of {config['epochs']}")
        else:
            config = config_from_args(args)
            run_dir = args.out or os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
            run_dir = _agree(ranks, run_dir)
            folder = _claim(ranks, run_dir, new=True, flag="--out")
            run = Run(config, run_dir, device, ranks=ranks, cuda_graph=graph)
        writer = _tensorboard(run) if args.tensorboard and ranks.main else None
        processes = f" x {ranks.world} processes" if ranks.world > 1 else ""
        say(f"{run.dataset.describe()}; impl {config['impl']} on {device}{processes}"
            f"{'; cuda graph' if graph else ''}; run folder {run_dir}")
        try:
            summary = run.fit()
        except KeyboardInterrupt:
            if ranks.main:
                print(f"\ninterrupted: {run_dir}/last.pt holds epoch {run.epoch} of {config['epochs']}; continue "
                      f"with python -m lenet_ext.train --resume {run_dir}", file=sys.stderr)
            return 130
        if summary["reached_target_epoch"] is not None:
            target = (f"test accuracy {summary['target_acc']:g} reached at epoch {summary['reached_target_epoch']} "
                      f"after {summary['seconds_to_target']:.1f} s of training"
                      f"{' (stopped there)' if summary['stopped_at_target'] else ''}")
        else:
            target = f"test accuracy {summary['target_acc']:g} not reached"
        best = (f"test accuracy {summary['best_test_acc']:.4f}" if summary["best_test_acc"] is not None else "-")
        final = f"{summary['test_acc']:.4f}" if summary["test_acc"] is not None else "-"
        say(f"done: test accuracy {final} after {run.epoch} epochs (best validation loss at epoch "
            f"{summary['best_epoch']}: {best}); {summary['train_seconds']:.1f} s of training; {target}")
        if writer is not None:
            _tensorboard_embedding(writer, run, min(config["tsne_samples"], 1000))
            writer.close()
        if ranks.main and not args.no_plots and not config["dry_run"]:
            from . import analysis
            analysis.analyze(run_dir, device=device, log=print, dataset=run.dataset, claim_folder=False)
        return 0
    except UserError as exc:
        print(f"error{f' (rank {ranks.rank})' if ranks.world > 1 else ''}: {exc}", file=sys.stderr)
        return 1
    finally:
        if folder is not None:
            folder.release()
        if ranks.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
