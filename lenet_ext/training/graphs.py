"""The training step on CUDA: the hyperparameters a captured step reads on the device, and the
step captured once as CUDA graphs and replayed, behind the same step(lo, hi) call as the eager
step in loop.py, so the epoch loop has one path."""

import copy
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F


def plain(value):
    """A tensor hyperparameter as a float (for checkpoints: the same format on every device)."""
    return float(value) if isinstance(value, torch.Tensor) else value


class DeviceHyperparameters:
    """On CUDA, the learning rate and Adam's betas as device tensors holding the schedule's
    current values: the schedule writes plain floats into the optimizer's groups, sync() copies
    them into the tensors and puts the tensors back, so a captured step reads the current values.
    Off CUDA it does nothing."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device):
        self.optimizer, self.on = optimizer, device.type == "cuda"
        if self.on:
            self.lr, self.beta1, self.beta2 = (torch.zeros((), dtype=torch.float32, device=device) for _ in range(3))
        self.sync()

    def sync(self) -> None:
        if not self.on:
            return
        for group in self.optimizer.param_groups:
            self.lr.fill_(plain(group["lr"]))
            group["lr"] = self.lr
            if "betas" in group:
                beta1, beta2 = (plain(b) for b in group["betas"])
                self.beta1.fill_(beta1)
                self.beta2.fill_(beta2)
                group["betas"] = (self.beta1, self.beta2)


class CapturedStep:
    """The training step as CUDA graphs, one per batch size an epoch uses (full batches and the
    last, shorter one), each reading its batch from the epoch's static buffers at a device-side
    position counter. Captured at the first start_epoch() (the batches' buffers must hold an
    epoch); step(lo, hi) replays the graph of batch lo..hi-1."""

    def __init__(self, run, make_optimizer: Callable):
        self.run, self.make_optimizer = run, make_optimizer
        self.graphs: Optional[Dict[int, torch.cuda.CUDAGraph]] = None
        self.position: Optional[torch.Tensor] = None

    @property
    def captured(self) -> bool:
        return self.graphs is not None

    def start_epoch(self, first_step: int = 0) -> None:
        """Before an epoch: captures the graphs the first time, and points the position counter at
        the epoch's first step (0, or where a stopped epoch resumes)."""
        if self.graphs is None:
            self.graphs = self._capture()
        assert self.position is not None  # made by _capture()
        self.position.fill_(first_step)

    def step(self, lo: int, hi: int) -> None:
        self.graphs[hi - lo].replay()  # type: ignore[index]  # start_epoch() captured them

    def _capture(self) -> Dict[int, torch.cuda.CUDAGraph]:
        """Before capture, one-time initialisations are run by a throwaway copy of the model and
        optimizer on a side stream, and the optimizer's state is created by a step with zero
        gradients and a zero learning rate (its step count then reset): the state of a fresh
        optimizer, so the captured run follows the uncaptured one step for step."""
        run = self.run
        cfg, device, hyper = run.config, run.device, run.hyperparameters
        b, n = cfg.batch_size, run.batches.n
        full, tail = (n // b, n % b) if run.steps_per_epoch * b >= n else (run.steps_per_epoch, 0)
        sizes = ([b] if full else []) + ([tail] if tail else [])
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            model = copy.deepcopy(run.model)
            opt = self.make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, device)
            for size in sizes:
                for _ in range(2):
                    x, y = run.batches.gather(torch.arange(size, device=device))
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x), y).backward()
                    opt.step()
            del model, opt
            if not run.optimizer.state:  # a fresh optimizer (a resumed run already has its state)
                for p in run.model.parameters():
                    p.grad = torch.zeros_like(p)
                lr = float(hyper.lr)
                hyper.lr.fill_(0.0)
                run.optimizer.step()
                hyper.lr.fill_(lr)
                for state in run.optimizer.state.values():
                    if "step" in state:
                        state["step"].zero_()
            run.optimizer.zero_grad(set_to_none=True)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        self.position = torch.zeros((), dtype=torch.int64, device=device)
        arange = torch.arange(b, device=device)
        graphs = {}
        for size in sizes:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                if size == b and full:
                    positions = arange + self.position * b
                    self.position.add_(1)
                else:
                    positions = torch.arange(full * b, full * b + size, device=device)
                x, y = run.batches.gather(positions)
                run.train_step(x, y, 1.0)
            graphs[size] = graph
        run.progress.reset()
        return graphs
