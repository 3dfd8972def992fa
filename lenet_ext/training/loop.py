"""The training loop: the epoch's batches (seeded order, random shifts and distortions, built on
the training device), the running totals read without stalling it, evaluation, the optimizer, and Run, one
training run: its model, optimizer and schedule, the step (eager here, or captured as CUDA graphs
by graphs.py, behind the same call), its checkpoints and history.

Run is handed its data and settings; it writes last.pt, best.pt and the metrics into its run
folder as it goes. summary() returns the run's summary; the caller writes it (runs.write_summary).
"""

import dataclasses
import math
import os
import platform
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

import lenet_ext

from .. import checkpoint, data
from ..distortions import Augment
from ..errors import UserError
from ..models import LeNet5, model_options
from . import runs
from .config import TrainConfig
from .distributed import Dist
from .graphs import CapturedStep, DeviceHyperparameters, plain


class TrainingError(UserError, RuntimeError):
    """The run cannot go on (a NaN loss, say); the last good checkpoint is kept."""


class Stopped(Exception):
    """A stop was asked for (SIGTERM) and the run stopped at a step boundary, its last.pt holding
    the epoch so far (resumable from that step)."""

    def __init__(self, epoch: int, step: int, steps: int):
        super().__init__(f"stopped at epoch {epoch + 1}, step {step} of {steps}")
        self.epoch, self.step, self.steps = epoch, step, steps


class Batches:
    """The training set's batches for one epoch: a seeded order and random shifts of up to `shift`
    pixels, filling the shift with the background value, then --augment's distortions (if any) of
    each image by its epoch position's draws (distortions.Augment).

    The images are padded by `shift` once; the shifted image at epoch position j is then the
    28 x 28 window of padded image order[j] at offset (oy, ox) = offsets[:, j]: 28 rows of 28
    pixels starting at base[j] + 28 row offsets, base[j] = order[j] * S * S + oy * S + ox (S =
    28 + 2 * shift). A batch is one index_select of those rows from a (rows, 28) view of the flat
    padded images. Everything lives on the training device in buffers allocated once: start()
    refreshes the epoch's base and labels in place (the addresses a CUDA graph captured stay
    valid). One builder (_rows) makes every batch: fill() into the preallocated x, gather() into
    new tensors."""

    def __init__(self, split: data.Split, shift: int, batch_size: int, augment: Optional[Augment] = None):
        images, device = split.images, split.images.device
        n = len(split)
        self.augment = augment if augment is not None and augment.active else None
        self.draws = torch.zeros(n if self.augment else 0, Augment.DRAWS, dtype=images.dtype, device=device)
        self.maps = torch.zeros(n if self.augment else 0, 2, 3, dtype=images.dtype, device=device)
        self.batch_size, self.field_key = batch_size, 0
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

    def start(
        self, order: torch.Tensor, offsets: torch.Tensor, draws: Optional[torch.Tensor] = None, field_key: int = 0
    ) -> None:
        """The epoch's order (n,) and offsets (2, n), each in 0..2*shift, on the training device;
        with --augment, each position's distortion draws (n, Augment.DRAWS) and the key of the
        epoch's elastic fields (each batch's come from a generator seeded by it and the batch)."""
        if self.augment is not None and draws is not None:
            self.draws.copy_(draws)
            self.maps.copy_(self.augment.maps(self.draws))
            self.field_key = field_key
        base = order * (self.side * self.side) + offsets[0] * self.side + offsets[1]
        self.base.copy_(base)
        torch.index_select(self.labels, 0, order, out=self.epoch_labels)

    def _rows(self, base: torch.Tensor, index: Optional[torch.Tensor] = None, x: Optional[torch.Tensor] = None):
        """The images whose first pixels are at flat positions `base`: one index_select of 28 rows
        each, written into index and x when given (preallocated), else into new tensors."""
        n = len(base)
        index = torch.add(base[:, None], self.row_offsets, out=index)
        rows = torch.index_select(self.rows, 0, index.view(-1), out=None if x is None else x.view(n * 28, 28))
        return rows.view(n, 1, 28, 28)

    def gather(self, positions: torch.Tensor):
        """(images, labels) at the epoch positions in the index tensor `positions`, as new tensors
        (what a captured CUDA graph runs: its allocations are its own)."""
        if self.augment is not None:  # the captured graphs' path, which train refuses with --augment
            raise RuntimeError("Batches.gather: --augment's distortions are drawn per batch, outside a graph")
        return self._rows(self.base.index_select(0, positions)), self.epoch_labels.index_select(0, positions)

    def fill(self, start: int, stop: int):
        """(images, labels) of epoch positions start..stop-1, written into the preallocated buffers."""
        n = stop - start
        x = self._rows(self.base[start:stop], self.index[:n], self.x[:n])
        if self.augment is not None:
            x = self.augment(x, self.draws[start:stop], self.maps[start:stop], self._fields(start, stop))
        return x, self.epoch_labels[start:stop]

    def _fields(self, start: int, stop: int) -> Optional[torch.Tensor]:
        """The elastic fields of positions start..stop-1: those of their whole batch (one generator
        per batch, keyed by the epoch and the batch), so that any split of a batch between
        processes, and a resume at any step, gets the same ones."""
        if self.augment is None or not self.augment.elastic:
            return None
        b = self.batch_size
        batch, lo = start // b, (start // b) * b
        hi = min(lo + b, self.n)
        generator = torch.Generator(device=self.x.device).manual_seed(self.field_key * 1_000_003 + batch)
        return self.augment.fields(hi - lo, generator, self.x.dtype, self.x.device)[start - lo : stop - lo]


class Progress:
    """The epoch's running totals (loss sum, correct predictions), kept on the training device and
    read without stalling it: snapshot() starts an asynchronous copy into pinned host memory (on
    CUDA; a plain copy on the CPU) and latest() returns the newest snapshot whose copy is done.
    Under torchrun the snapshot is all-reduced first (every rank takes every snapshot, so the
    collectives match), and every rank sees the same numbers."""

    def __init__(self, device: torch.device, ranks: Dist):
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
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
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
        betas = (
            torch.tensor(0.9, dtype=torch.float32, device=device),
            torch.tensor(0.999, dtype=torch.float32, device=device),
        )
        return kind(params, lr=lr_value, betas=betas, capturable=True, **extra)  # type: ignore[arg-type]
    return kind(params, lr=lr_value, **extra)  # type: ignore[arg-type]


class EagerStep:
    """The training step as written: this rank's share of batch lo..hi-1 gathered into the
    preallocated buffers, then forward, backward and the optimizer step."""

    captured = False

    def __init__(self, run: "Run"):
        self.run = run

    def start_epoch(self, first_step: int = 0) -> None:
        pass

    def step(self, lo: int, hi: int) -> None:
        run = self.run
        mine = run.ranks.shard(hi - lo)
        x, y = run.batches.fill(lo + mine.start, lo + mine.stop)
        run.train_step(x, y, len(y) * run.ranks.world / (hi - lo))


class Run:
    """One training run: its settings, data, model, optimizer and history; resumable. dataset is
    the data it trains on (data.load, or resume.run_data for a resumed run); cuda_graph: replay
    the step as CUDA graphs (graphs.CapturedStep) rather than run it eagerly."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str,
        device: torch.device,
        dataset: data.MNIST,
        log=print,
        ranks: Dist = Dist(),
        cuda_graph: bool = False,
    ):
        self.config, self.run_dir, self.device, self.ranks = config, run_dir, device, ranks
        self.log = log if ranks.main else (lambda *a, **k: None)
        if config.dry_run:
            dataset = dataclasses.replace(dataset, valid=_head(dataset.valid, 256), test=_head(dataset.test, 256))
        self.dataset = dataset.to(device)
        torch.manual_seed(config.seed)
        self.model = LeNet5(impl=config.impl, **model_options(config.to_dict())).to(device)
        self.net: torch.nn.Module = self.model  # what the training step calls: the model, or DDP around it
        if ranks.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.optimizer = make_optimizer(config.optimizer, self.model.parameters(), config.lr, device)
        self.steps_per_epoch = 2 if config.dry_run else math.ceil(len(self.dataset.train) / config.batch_size)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=self.steps_per_epoch
        )
        self.hyperparameters = DeviceHyperparameters(self.optimizer, device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.best = {"valid_loss": math.inf, "epoch": 0}
        self.batches = Batches(self.dataset.train, config.shift, config.batch_size, Augment.of(config))
        self.progress = Progress(device, ranks)
        self.stepper = CapturedStep(self, make_optimizer) if cuda_graph else EagerStep(self)
        self.on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None  # each epoch's row (TensorBoard)
        # Set (by a SIGTERM handler, say) to stop at the next step boundary with a resumable last.pt.
        self.stop = threading.Event()
        self._resume_point: Optional[Dict[str, Any]] = None  # where a stopped epoch resumes
        self._epoch_start_generator: Optional[torch.Tensor] = None

    # -------------------------------------------------------------------------------- state
    def payload(self, **entries) -> Dict[str, Any]:
        """A checkpoint of the run as it is now: settings, epoch, weights, data and versions, plus
        entries (best.pt adds the epoch's metrics; last.pt, via state(), what resuming needs)."""
        return {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "impl": self.config.impl,
            "model": self.model.state_dict(),
            **entries,
            "data": self.data_info(),
            "versions": versions(),
        }

    def state(self) -> Dict[str, Any]:
        """last.pt: the payload with the optimizer, schedule, generator, history and best epoch."""
        optimizer = self.optimizer.state_dict()
        for group in optimizer["param_groups"]:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in group:
                    group[key] = plain(group[key])
            if "betas" in group:
                group["betas"] = tuple(plain(b) for b in group["betas"])
        scheduler = self.scheduler.state_dict()
        scheduler["_last_lr"] = [plain(v) for v in scheduler.get("_last_lr", [])]
        scheduler["base_lrs"] = [plain(v) for v in scheduler.get("base_lrs", [])]
        return self.payload(
            optimizer=optimizer,
            scheduler=scheduler,
            generator=self.generator.get_state(),
            history=self.history,
            best=self.best,
        )

    def stopped_state(self, step: int, seen: int, totals: torch.Tensor) -> Dict[str, Any]:
        """last.pt in the middle of an epoch: state() plus where the epoch stands (its first `step`
        steps done, `seen` images, the running totals) and the generator as the epoch began, from
        which the epoch's order and shifts are drawn again on resume."""
        state = self.state()
        state["generator"] = self._epoch_start_generator
        state["mid_epoch"] = {"step": step, "seen": seen, "totals": totals.detach().cpu().double().clone()}
        return state

    def restore(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.hyperparameters.sync()
        self.generator.set_state(state["generator"])
        self.epoch, self.history, self.best = state["epoch"], list(state["history"]), dict(state["best"])
        self._resume_point = state.get("mid_epoch")

    def data_info(self) -> Dict[str, Any]:
        d = self.dataset
        return {
            "dataset": d.dataset,
            "source": d.source,
            "location": d.location,
            "train": len(d.train),
            "valid": len(d.valid),
            "test": len(d.test),
            "fingerprint": d.fingerprint,
        }

    def save_last(self) -> None:
        if self.ranks.main:
            checkpoint.save(os.path.join(self.run_dir, "last.pt"), self.state())

    # -------------------------------------------------------------------------------- training
    def train_step(self, x: torch.Tensor, y: torch.Tensor, share: float) -> None:
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

    def train_epoch(self):
        """One epoch over the training set in a seeded order. Each global batch of --batch-size
        images is split between the ranks; each rank's loss is its share of the batch's mean, so
        DDP's averaged gradient equals the one-process gradient of the whole batch."""
        from tqdm import tqdm

        cfg, ranks, batches = self.config, self.ranks, self.batches
        self.model.train()
        n, b = batches.n, cfg.batch_size
        # The epoch's order and shifts, drawn from the run's generator (on the host, so that a seed
        # gives the same run on every device) and sent to the device in one copy.
        self._epoch_start_generator = self.generator.get_state()
        order = torch.randperm(n, generator=self.generator)
        offsets = torch.randint(0, 2 * cfg.shift + 1, (2, n), generator=self.generator)
        if self.device.type == "cuda":
            order, offsets = (t.pin_memory().to(self.device, non_blocking=True) for t in (order, offsets))
        draws = torch.rand(n, Augment.DRAWS, generator=self.generator) if batches.augment else None
        if self.device.type == "cuda" and draws is not None:
            draws = draws.pin_memory().to(self.device, non_blocking=True)
        batches.start(order, offsets, draws, field_key=cfg.seed * 10_007 + self.epoch)
        first, seen = 0, 0  # a stopped epoch resumes after its last step done
        resume, self._resume_point = self._resume_point, None
        self.stepper.start_epoch(int(resume["step"]) if resume else 0)
        self.progress.reset()
        if resume:
            first, seen = int(resume["step"]), int(resume["seen"])
            self.progress.totals.copy_(resume["totals"].to(self.progress.totals))
        check_every = max(1, self.steps_per_epoch // 4) if self.device.type == "cuda" else 20
        start = time.perf_counter()
        bar = tqdm(
            range(first, self.steps_per_epoch),
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            initial=first,
            total=self.steps_per_epoch,
            disable=not (ranks.main and sys.stderr.isatty()),
        )
        for step in bar:
            lo, hi = step * b, min((step + 1) * b, n)
            self.stepper.step(lo, hi)
            seen += hi - lo  # images of the global batches so far (all ranks)
            self.scheduler.step()
            self.hyperparameters.sync()
            last = step == self.steps_per_epoch - 1
            snapshot_step = step % check_every == check_every - 1 or last
            if snapshot_step:
                self.progress.snapshot(seen)
                latest = self.progress.latest()
                self._check(latest, step)
                if latest is not None:
                    bar.set_postfix(loss=f"{latest[0] / max(latest[2], 1):.4f}")
            # A stop is taken at a step boundary every rank agrees on: any step in one process, the
            # snapshot steps under torchrun (where the ranks' requests are summed).
            if not last and (snapshot_step or ranks.world == 1) and self._stop_agreed():
                bar.close()
                if ranks.main:
                    checkpoint.save(
                        os.path.join(self.run_dir, "last.pt"), self.stopped_state(step + 1, seen, self.progress.totals)
                    )
                raise Stopped(self.epoch, step + 1, self.steps_per_epoch)
        bar.close()
        loss_sum, correct, seen_all = self.progress.final(seen)
        self._check((loss_sum, correct, seen_all), self.steps_per_epoch - 1)
        elapsed = time.perf_counter() - start
        return loss_sum / seen_all, correct / seen_all, seen_all / elapsed, elapsed

    def _stop_agreed(self) -> bool:
        """Whether a stop was asked for, of this process or (under torchrun) of any rank."""
        if self.ranks.world == 1:
            return self.stop.is_set()
        flag = torch.tensor([1.0 if self.stop.is_set() else 0.0], dtype=torch.float64, device=self.device)
        return bool(self.ranks.sum(flag).item() > 0)

    def _check(self, totals, step: int) -> None:
        if totals is not None and not math.isfinite(totals[0]):
            raise TrainingError(
                f"the training loss became {totals[0] / max(totals[2], 1)} at epoch {self.epoch + 1} (by step "
                f"{step + 1}): stopping (try a lower --lr than {self.config.lr}). last.pt holds epoch {self.epoch}."
            )

    def run_epoch(self) -> Dict[str, Any]:
        """One whole epoch: training, evaluation of the validation and test sets, the checkpoints
        and metrics; returns its metrics row."""
        cfg = self.config
        t0 = time.perf_counter()
        train_loss, train_acc, images_per_s, seconds = self.train_epoch()
        valid_loss, valid_acc = evaluate(self.model, self.dataset.valid, cfg.test_batch_size, self.ranks)
        test_loss, test_acc = evaluate(self.model, self.dataset.test, cfg.test_batch_size, self.ranks)
        self.epoch += 1
        row = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "valid_loss": valid_loss,
            "valid_acc": valid_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": plain(self.scheduler.get_last_lr()[0]),
            "images_per_s": images_per_s,
            "epoch_s": seconds,
        }
        if valid_loss < self.best["valid_loss"] or len(self.dataset.valid) == 0:
            self.best = {"valid_loss": valid_loss, "epoch": self.epoch}
            if self.ranks.main:
                checkpoint.save(os.path.join(self.run_dir, "best.pt"), self.payload(metrics=row))
        row["wall_s"] = time.perf_counter() - t0  # training, evaluation and the best checkpoint
        self.history.append(row)
        self.save_last()
        if self.ranks.main:
            runs.write_metrics(self.run_dir, self.history)
        valid = "-" if len(self.dataset.valid) == 0 else f"{valid_loss:.4f} acc {valid_acc:.4f}"
        self.log(
            f"epoch {self.epoch:3d}/{cfg.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
            f"valid loss {valid}  test loss {test_loss:.4f} acc {test_acc:.4f}  {images_per_s:,.0f} img/s"
        )
        if self.on_epoch is not None:
            self.on_epoch(row)
        return row

    def target(self) -> Tuple[Optional[int], Optional[float], Optional[float]]:
        """(first epoch whose test accuracy reached the target, training seconds and wall seconds
        until the end of that epoch), or Nones if no epoch has."""
        seconds = wall = 0.0
        for row in self.history:
            seconds += row["epoch_s"]
            wall += row.get("wall_s", row["epoch_s"])
            if row["test_acc"] is not None and row["test_acc"] >= self.config.target_acc:
                return row["epoch"], seconds, wall
        return None, None, None

    def fit(self) -> Dict[str, Any]:
        """Trains until --epochs (or the target, with --stop-at-target); returns summary()."""
        if self.epoch == 0:
            self.save_last()  # a last.pt exists from the start: epoch 0, nothing trained yet
        while self.epoch < self.config.epochs:
            if self.config.stop_at_target and self.target()[0] is not None:
                break
            self.run_epoch()
        return self.summary()

    def summary(self) -> Dict[str, Any]:
        """The run's summary (summary.json): settings, device, final and best epochs, times, the target."""
        cfg = self.config
        last = self.history[-1] if self.history else {}
        best_row = next((r for r in self.history if r["epoch"] == self.best["epoch"]), {})
        reached, seconds, wall = self.target()
        return {
            "data": self.data_info(),
            "impl": cfg.impl,
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device)
            if self.device.type == "cuda"
            else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "processes": self.ranks.world,
            "config": cfg.to_dict(),
            "recipe": cfg.recipe,
            "cuda_graph": self.stepper.captured,
            "epochs_done": self.epoch,
            "final": last,
            "best_epoch": self.best["epoch"],
            "best": best_row,
            "test_acc": last.get("test_acc"),
            "best_test_acc": best_row.get("test_acc"),
            "train_seconds": sum(r["epoch_s"] for r in self.history),
            "wall_seconds": sum(r.get("wall_s", r["epoch_s"]) for r in self.history),
            "target_acc": cfg.target_acc,
            "reached_target_epoch": reached,
            "seconds_to_target": seconds,
            "wall_seconds_to_target": wall,
            "stopped_at_target": cfg.stop_at_target and reached is not None and self.epoch < cfg.epochs,
            "versions": versions(),
        }


def _head(split: data.Split, n: int) -> data.Split:
    return data.Split(split.images[:n], split.labels[:n], split.index[:n])


def versions() -> Dict[str, str]:
    return {
        "lenet_ext": str(lenet_ext.__version__),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
