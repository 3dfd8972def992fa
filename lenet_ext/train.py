"""Train LeNet-5 on MNIST with our kernels (--impl ext) or the torch.nn reference (--impl torch),
then write the study of the run (loss curves, failures, t-SNE, conv1 maps, report.html).

    python -m lenet_ext.train                               # defaults: >= 99% test accuracy on MNIST
    python -m lenet_ext.train --data-dir ~/data/mnist --impl torch --epochs 5
    python -m lenet_ext.train --resume runs/20261126-120000  # continue an interrupted run
    torchrun --nproc_per_node=2 -m lenet_ext.train           # data-parallel over 2 processes

Under torchrun (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (gloo on the CPU,
NCCL on CUDA). --batch-size is the global batch: each process takes its slice of every batch,
so the run follows the same trajectory as one process with the same seed, and the learning
rate needs no rescaling when the number of processes changes.

The run folder (--out, default runs/<timestamp>) gets metrics.jsonl and metrics.csv (one row per
epoch), best.pt (lowest validation loss), last.pt (with optimizer state, for --resume),
summary.json, and the study's files.
"""
import argparse
import dataclasses
import datetime
from dataclasses import dataclass
import json
import math
import os
import platform
import sys
import time
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F

import lenet_ext

from . import checkpoint, data
from .models import IMPLS, LeNet5


class TrainingError(RuntimeError):
    """The run cannot go on (a NaN loss, say); the last good checkpoint is kept."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lenet_ext.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=sorted(data.DATASETS), help="dataset (default: mnist)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the four IDX files (default: the cache, else download, else the embedded "
                        "5,000 digits)")
    p.add_argument("--impl", default="ext", choices=IMPLS, help="our kernels or the torch.nn reference "
                   "(default: ext)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: cuda when a GPU (and, for --impl ext, our CUDA kernels) is there (default: auto)")
    p.add_argument("--epochs", type=int, default=20, help="number of epochs (default: 20)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size; under torchrun the global "
                   "batch, split between the processes (default: 64)")
    p.add_argument("--test-batch-size", type=int, default=1000, help="evaluation batch size (default: 1000)")
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate of the one-cycle schedule "
                   "(default: 0.01)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"], help="optimizer (default: adam)")
    p.add_argument("--shift", type=int, default=2, help="augmentation: random shifts of up to this many "
                   "pixels, 0 to turn off (default: 2)")
    p.add_argument("--valid-size", type=int, default=5000, help="training images held out for validation "
                   "(default: 5000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default: runs/<timestamp>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR|last.pt",
                   help="continue a run from its last.pt (its settings are used)")
    p.add_argument("--dry-run", action="store_true", help="one epoch of two batches, to check the setup")
    p.add_argument("--no-plots", action="store_true", help="skip the study at the end")
    p.add_argument("--tsne-samples", type=int, default=2000, help="test images in the t-SNE (default: 2000)")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("epochs", "batch_size", "test_batch_size", "tsne_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        parser.error(f"--lr must be a positive number, got {args.lr}")
    if args.shift < 0 or args.shift > 8:
        parser.error(f"--shift must be in 0..8, got {args.shift}")
    if args.valid_size < 0:
        parser.error(f"--valid-size must be >= 0, got {args.valid_size}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    if args.device == "cuda" and args.impl == "ext" and "cuda" not in lenet_ext.backends():
        parser.error("--device cuda --impl ext: lenet_ext was built without CUDA kernels (rebuild where the "
                     "CUDA toolkit is found)")


def pick_device(requested: str, impl: str) -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    gpu = torch.cuda.is_available() and (impl == "torch" or "cuda" in lenet_ext.backends())
    return torch.device("cuda" if gpu else "cpu")


def random_shift(images: torch.Tensor, offsets: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Moves image i by (offsets[0, i] - max_shift, offsets[1, i] - max_shift) pixels, filling with
    the background value; the whole batch at once, by indexing a padded copy."""
    if max_shift == 0:
        return images
    n, _, h, w = images.shape
    background = images.amin() if n else 0.0
    padded = F.pad(images, (max_shift,) * 4, value=float(background))
    offsets = offsets.to(images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)          # (n, h)
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)          # (n, w)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


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
    """(mean cross-entropy, accuracy) over a split, in batches; under torchrun each rank takes its
    shard and the sums are all-reduced, so every rank gets the same numbers."""
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
    n = max(len(split), 1)
    return loss_sum / n, correct / n


def make_optimizer(name: str, params, lr: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


class Run:
    """One training run: its settings, data, model, optimizer and history; resumable."""

    def __init__(self, config: Dict[str, Any], run_dir: str, device: torch.device, log=print,
                 ranks: Dist = Dist()):
        self.config, self.run_dir, self.device, self.ranks = config, run_dir, device, ranks
        self.log = log if ranks.main else (lambda *a, **k: None)
        self.dataset = data.load(config["dataset"], config["data_dir"], config["valid_size"], config["seed"],
                                 log=self.log)
        if config["dry_run"]:
            self.dataset = dataclasses.replace(
                self.dataset, valid=_head(self.dataset.valid, 256), test=_head(self.dataset.test, 256))
        self.dataset = self.dataset.to(device)
        torch.manual_seed(config["seed"])
        self.model = LeNet5(impl=config["impl"]).to(device)
        self.net = self.model  # what the training step calls: the model, or DDP around it
        if ranks.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = make_optimizer(config["optimizer"], self.model.parameters(), config["lr"])
        self.steps_per_epoch = 2 if config["dry_run"] else math.ceil(len(self.dataset.train) / config["batch_size"])
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=config["lr"], epochs=config["epochs"], steps_per_epoch=self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(config["seed"])
        self.epoch = 0
        self.history = []
        self.best = {"valid_loss": math.inf, "epoch": 0}

    # -------------------------------------------------------------------------------- state
    def state(self) -> Dict[str, Any]:
        return {"config": self.config, "epoch": self.epoch, "impl": self.config["impl"],
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "generator": self.generator.get_state(),
                "history": self.history, "best": self.best, "data": self.data_info(),
                "versions": versions()}

    def restore(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.epoch, self.history, self.best = state["epoch"], list(state["history"]), dict(state["best"])

    def data_info(self) -> Dict[str, Any]:
        d = self.dataset
        return {"dataset": d.dataset, "source": d.source, "location": d.location, "train": len(d.train),
                "valid": len(d.valid), "test": len(d.test)}

    def save_last(self) -> None:
        if self.ranks.main:
            checkpoint.save(os.path.join(self.run_dir, "last.pt"), self.state())

    # -------------------------------------------------------------------------------- training
    def train_epoch(self):
        """One epoch over the training set in a seeded order. Each global batch of --batch-size
        images is split between the ranks; each rank's loss is its share of the batch's mean, so
        DDP's averaged gradient equals the one-process gradient of the whole batch."""
        from tqdm import tqdm
        cfg, train, ranks = self.config, self.dataset.train, self.ranks
        self.model.train()
        n = len(train)
        order = torch.randperm(n, generator=self.generator).to(self.device)
        offsets = torch.randint(0, 2 * cfg["shift"] + 1, (2, n), generator=self.generator)
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, correct, seen (this rank)
        start = time.perf_counter()
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {self.epoch + 1}/{cfg['epochs']}", unit="batch",
                   leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                   disable=not (ranks.main and sys.stderr.isatty()))
        for step in bar:
            batch = slice(step * cfg["batch_size"], (step + 1) * cfg["batch_size"])
            global_idx = order[batch]
            mine = ranks.shard(len(global_idx))
            x = random_shift(train.images[global_idx[mine]], offsets[:, batch][:, mine], cfg["shift"])
            y = train.labels[global_idx[mine]]
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.net(x)
            loss_sum = F.cross_entropy(logits, y, reduction="sum")
            (loss_sum * (ranks.world / len(global_idx))).backward()
            self.optimizer.step()
            self.scheduler.step()
            totals += torch.stack([loss_sum.detach().double(), (logits.detach().argmax(1) == y).sum().double(),
                                   torch.tensor(float(len(y)), dtype=torch.float64, device=self.device)])
            if step % 20 == 0 or step == self.steps_per_epoch - 1:
                seen_totals = ranks.sum(totals.clone())
                running = (seen_totals[0] / seen_totals[2].clamp(min=1)).item()
                if not math.isfinite(running):
                    raise TrainingError(
                        f"the training loss became {running} at epoch {self.epoch + 1}, step {step + 1}: "
                        f"stopping (try a lower --lr than {cfg['lr']}). last.pt holds epoch {self.epoch}.")
                bar.set_postfix(loss=f"{running:.4f}")
        bar.close()
        loss_sum, correct, seen = ranks.sum(totals).tolist()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        return loss_sum / seen, correct / seen, seen / elapsed, elapsed

    def fit(self) -> Dict[str, Any]:
        cfg = self.config
        if self.epoch == 0:
            self.save_last()  # a last.pt exists from the start: epoch 0, nothing trained yet
        while self.epoch < cfg["epochs"]:
            train_loss, train_acc, images_per_s, seconds = self.train_epoch()
            valid_loss, valid_acc = evaluate(self.model, self.dataset.valid, cfg["test_batch_size"], self.ranks)
            test_loss, test_acc = evaluate(self.model, self.dataset.test, cfg["test_batch_size"], self.ranks)
            self.epoch += 1
            row = {"epoch": self.epoch, "train_loss": train_loss, "train_acc": train_acc,
                   "valid_loss": valid_loss, "valid_acc": valid_acc, "test_loss": test_loss, "test_acc": test_acc,
                   "lr": self.scheduler.get_last_lr()[0], "images_per_s": images_per_s, "epoch_s": seconds}
            self.history.append(row)
            if valid_loss < self.best["valid_loss"] or len(self.dataset.valid) == 0:
                self.best = {"valid_loss": valid_loss, "epoch": self.epoch}
                if self.ranks.main:
                    checkpoint.save(os.path.join(self.run_dir, "best.pt"),
                                    {"config": cfg, "epoch": self.epoch, "impl": cfg["impl"],
                                     "model": self.model.state_dict(), "metrics": row, "data": self.data_info(),
                                     "versions": versions()})
            self.save_last()
            if self.ranks.main:
                checkpoint.write_metrics(self.run_dir, self.history)
            self.log(f"epoch {self.epoch:3d}/{cfg['epochs']}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
                     f"valid loss {valid_loss:.4f} acc {valid_acc:.4f}  test loss {test_loss:.4f} "
                     f"acc {test_acc:.4f}  {images_per_s:,.0f} img/s")
        return self.summary()

    def summary(self) -> Dict[str, Any]:
        last = self.history[-1] if self.history else {}
        best_row = next((r for r in self.history if r["epoch"] == self.best["epoch"]), {})
        summary = {
            "data": self.data_info(), "impl": self.config["impl"], "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
            else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "processes": self.ranks.world, "config": self.config,
            "epochs_done": self.epoch,
            "final": last, "best_epoch": self.best["epoch"], "best": best_row,
            "test_acc": last.get("test_acc"), "best_test_acc": best_row.get("test_acc"),
            "train_seconds": sum(r["epoch_s"] for r in self.history), "versions": versions(),
        }
        if self.ranks.main:
            checkpoint.atomic_write_text(os.path.join(self.run_dir, "summary.json"),
                                         json.dumps(summary, indent=2) + "\n")
        return summary


def _head(split: data.Split, n: int) -> data.Split:
    return data.Split(split.images[:n], split.labels[:n], split.index[:n])


def versions() -> Dict[str, str]:
    return {"lenet_ext": str(lenet_ext.__version__), "torch": str(torch.__version__), "python": platform.python_version()}


def config_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    keys = ("dataset", "data_dir", "impl", "epochs", "batch_size", "test_batch_size", "lr", "optimizer", "shift",
            "valid_size", "seed", "dry_run", "tsne_samples")
    config = {k: getattr(args, k) for k in keys}
    if config["data_dir"] is not None:
        config["data_dir"] = os.path.abspath(config["data_dir"])
    if config["dry_run"]:
        config["epochs"] = 1
    return config


def resume_path(value: str) -> str:
    return os.path.join(value, "last.pt") if os.path.isdir(value) else value


def _agree(ranks: Dist, value):
    """Rank 0's value, on every rank (a run folder name, an error message)."""
    if ranks.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    ranks = Dist()
    try:
        state = checkpoint.load(resume_path(args.resume)) if args.resume else None
        device = pick_device(args.device, state["config"]["impl"] if state else args.impl)
        ranks = init_distributed(device.type)
        say = print if ranks.main else (lambda *a, **k: None)
        if device.type == "cuda" and ranks.world > 1:
            device = torch.device("cuda", ranks.local_rank)
            torch.cuda.set_device(device)
        if state is not None:
            config = state["config"]
            run_dir = os.path.dirname(os.path.abspath(resume_path(args.resume)))
            run = Run(config, run_dir, device, ranks=ranks)
            run.restore(state)
            say(f"resuming {run_dir} after epoch {run.epoch} of {config['epochs']}")
        else:
            config = config_from_args(args)
            run_dir = args.out or os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
            taken = ranks.main and os.path.exists(os.path.join(run_dir, "last.pt"))
            run_dir, taken = _agree(ranks, (run_dir, taken))
            if taken:
                parser.error(f"--out {run_dir} already holds a run: pick another folder, or --resume {run_dir}")
            if ranks.main:
                os.makedirs(run_dir, exist_ok=True)
            run = Run(config, run_dir, device, ranks=ranks)
        processes = f" x {ranks.world} processes" if ranks.world > 1 else ""
        say(f"{run.dataset.describe()}; impl {config['impl']} on {device}{processes}; run folder {run_dir}")
        try:
            summary = run.fit()
        except KeyboardInterrupt:
            if ranks.main:
                print(f"\ninterrupted: {run_dir}/last.pt holds epoch {run.epoch} of {config['epochs']}; continue "
                      f"with python -m lenet_ext.train --resume {run_dir}", file=sys.stderr)
            return 130
        say(f"done: test accuracy {summary['test_acc']:.4f} after {run.epoch} epochs (best validation loss at "
            f"epoch {summary['best_epoch']}: test accuracy {summary['best_test_acc']:.4f}); "
            f"{summary['train_seconds']:.0f} s of training")
        if ranks.main and not args.no_plots and not config["dry_run"]:
            from . import analysis
            analysis.analyze(run_dir, device=device, log=print)
        return 0
    except (data.DataError, checkpoint.CheckpointError, TrainingError) as exc:
        print(f"error{f' (rank {ranks.rank})' if ranks.world > 1 else ''}: {exc}", file=sys.stderr)
        return 1
    finally:
        if ranks.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
