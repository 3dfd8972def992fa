"""One training run from its start to its end, as `python -m lenet_ext.train` runs it: the device,
the run folder (claimed new, or resumed from its last.pt), the data, the loop, the summary, the
TensorBoard writer and the study. The CLI parses flags into a Launch and calls train(); nothing
comes back but the exit status, so a run's settings travel one way."""

import datetime
import os
import signal
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.distributed as dist

import lenet_ext

from .. import cli, data
from ..errors import UserError
from . import distributed, runs, tensorboard
from .config import TrainConfig
from .distributed import Dist
from .loop import Run, Stopped
from .resume import load_resume_state, resume_path, run_data


@dataclass(frozen=True)
class Launch:
    """A run to start or continue: what it computes (config, for a new run; a resumed run goes on
    with the settings it was started with) and where and how it computes."""

    config: TrainConfig
    out: Optional[str] = None  # the run folder of a new run (default: default_run_dir())
    resume: Optional[str] = None  # RUN_DIR, a last.pt, "auto" or None (see train --resume)
    data_dir: Optional[str] = None  # a resumed run's data, found there (checked by its fingerprint)
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    cuda_graph: str = "auto"  # auto, on or off
    tensorboard: bool = False  # also write RUN/tensorboard
    study: bool = True  # write the study (analyze) at the end


def elastic_restart() -> bool:
    """Whether torchrun restarted this job's workers (after one failed, with --max-restarts)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    except ValueError:
        return False


def default_run_dir() -> str:
    """runs/<timestamp>; under torchrun runs/torchrun-<run id>, which every restart of the job shares."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id and run_id.lower() != "none" and all(c.isalnum() or c in "-_." for c in run_id):
        return os.path.join("runs", f"torchrun-{run_id}")
    return os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def resume_target(resume: Optional[str], out: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(the last.pt to resume from or None, the run folder for a new run or None): --resume PATH,
    or --resume auto (also a torchrun restart): the run in --out (or the default folder) if it holds
    a last.pt, else a new run there."""
    if resume is not None and resume != "auto":
        return resume_path(resume), None
    if resume == "auto" or elastic_restart():
        run_dir = out or default_run_dir()
        last = os.path.join(run_dir, "last.pt")
        return (last, None) if os.path.isfile(last) else (None, run_dir)
    return None, out or default_run_dir()


def check_same_settings(run_dir: str, saved: TrainConfig, given: TrainConfig) -> None:
    """--resume auto continues a run only with the settings it was started with."""
    differ = [k for k in TrainConfig.keys() if k != "data_dir" and getattr(saved, k) != getattr(given, k)]
    if differ:
        shown = ", ".join(
            f"--{k.replace('_', '-')} {getattr(saved, k)} there, {getattr(given, k)} given" for k in differ
        )
        raise cli.CliError(f"--resume auto: {run_dir} holds a run with other settings ({shown}); give another --out")


def pick_device(requested: str, impl: str) -> torch.device:
    if requested != "auto":
        return cli.parse_device(requested, impl)
    gpu = torch.cuda.is_available() and (impl == "torch" or "cuda" in lenet_ext.backends())
    return torch.device("cuda" if gpu else "cpu")


def use_cuda_graph(choice: str, device: torch.device, ranks: Dist, optimizer: str, log, augment: str = "none") -> bool:
    """Whether the training step is captured as a CUDA graph: --cuda-graph auto means on CUDA, in
    one process, with Adam or AdamW (SGD's momentum, which the one-cycle schedule moves, is a
    plain float the capture would freeze)."""
    if choice == "off" or device.type != "cuda":
        if choice == "on":
            raise cli.CliError(f"--cuda-graph on needs a CUDA device (training runs on {device})")
        return False
    why = (
        "torchrun (DDP's gradient all-reduce is not captured)"
        if ranks.world > 1
        else "--optimizer sgd (its momentum, moved by the schedule, cannot be a device tensor)"
        if optimizer == "sgd"
        else "--augment (its distortions have not yet run inside a captured graph on a GPU)"
        if augment != "none"
        else None
    )
    if why is not None:
        if choice == "on":
            raise cli.CliError(f"--cuda-graph on is not supported with {why}; use auto or off")
        log(f"cuda graph: off with {why}")
        return False
    return True


def train(launch: Launch) -> int:
    """Runs it; the exit status: 0 (done), 1 (a UserError, printed as `error: ...`), 130 (Ctrl-C) or
    143 (stopped by SIGTERM); after 130 and 143 the run's last.pt resumes it."""
    ranks, folder = Dist(), None
    try:
        resume_from, new_dir = resume_target(launch.resume, launch.out)
        state = load_resume_state(resume_from) if resume_from else None
        if state is not None and resume_from is not None and launch.resume in (None, "auto"):
            check_same_settings(os.path.dirname(resume_from), state["config"], launch.config)
        device = pick_device(launch.device, (state["config"] if state else launch.config).impl)
        ranks = distributed.init(device.type)
        say = print if ranks.main else (lambda *a, **k: None)
        if device.type == "cuda" and ranks.world > 1:
            device = torch.device("cuda", ranks.local_rank)
            torch.cuda.set_device(device)
        settings = state["config"] if state else launch.config
        graph = use_cuda_graph(launch.cuda_graph, device, ranks, settings.optimizer, say, settings.augment)
        if state is not None and resume_from is not None:
            config = state["config"]
            run_dir: str = os.path.dirname(os.path.abspath(resume_from))
            folder = distributed.claim(ranks, run_dir, new=False, flag="--resume" if launch.resume else "--out")
            state = load_resume_state(resume_from)  # again, now that no other run can write it
            dataset = run_data(config.to_dict(), state["data"], launch.data_dir, say)
            if launch.data_dir is not None:
                config = config.replace(data_dir=os.path.abspath(launch.data_dir))
            run = Run(config, run_dir, device, dataset, ranks=ranks, cuda_graph=graph)
            run.restore(state)
            mid = state.get("mid_epoch")
            at = f"step {mid['step']} of epoch {run.epoch + 1}" if mid else f"epoch {run.epoch}"
            say(f"resuming {run_dir} after {at} of {config.epochs}")
        else:
            config = launch.config
            run_dir = distributed.agree(ranks, new_dir)  # resume_target gives new_dir when not resuming
            folder = distributed.claim(ranks, run_dir, new=True, flag="--out")
            dataset = data.load(config.dataset, config.data_dir, config.valid_size, config.seed, log=say)
            run = Run(config, run_dir, device, dataset, ranks=ranks, cuda_graph=graph)
        writer = tensorboard.attach(run) if launch.tensorboard and ranks.main else None
        processes = f" x {ranks.world} processes" if ranks.world > 1 else ""
        say(
            f"{run.dataset.describe()}; impl {config.impl} on {device}{processes}"
            f"{'; cuda graph' if graph else ''}{'' if config.recipe == 'default' else '; recipe ' + config.recipe}"
            f"; run folder {run_dir}"
        )
        # SIGTERM (a scheduler, torchrun's agent, kill) stops the run at the next step boundary with
        # a last.pt that resumes from that step.
        signal.signal(signal.SIGTERM, lambda signum, frame: run.stop.set())
        try:
            summary = run.fit()
            if ranks.main:
                runs.write_summary(run_dir, summary)
        except Stopped as stop:
            if ranks.main:
                print(
                    f"stopped by SIGTERM at step {stop.step} of {stop.steps} in epoch {stop.epoch + 1}: "
                    f"{run_dir}/last.pt holds it; continue with python -m lenet_ext.train --resume {run_dir}",
                    file=sys.stderr,
                )
            return 143
        except KeyboardInterrupt:
            if ranks.main:
                print(
                    f"\ninterrupted: {run_dir}/last.pt holds epoch {run.epoch} of {config.epochs}; continue "
                    f"with python -m lenet_ext.train --resume {run_dir}",
                    file=sys.stderr,
                )
            return 130
        if summary["reached_target_epoch"] is not None:
            target = (
                f"test accuracy {summary['target_acc']:g} reached at epoch {summary['reached_target_epoch']} "
                f"after {summary['seconds_to_target']:.1f} s of training"
                f"{' (stopped there)' if summary['stopped_at_target'] else ''}"
            )
        else:
            target = f"test accuracy {summary['target_acc']:g} not reached"
        best = f"test accuracy {summary['best_test_acc']:.4f}" if summary["best_test_acc"] is not None else "-"
        final = f"{summary['test_acc']:.4f}" if summary["test_acc"] is not None else "-"
        say(
            f"done: test accuracy {final} after {run.epoch} epochs (best validation loss at epoch "
            f"{summary['best_epoch']}: {best}); {summary['train_seconds']:.1f} s of training; {target}"
        )
        if writer is not None:
            tensorboard.add_embedding(writer, run, min(config.tsne_samples, 1000))
            writer.close()
        if ranks.main and launch.study and not config.dry_run:
            from .. import analyze

            analyze.analyze(run_dir, device=device, log=print, dataset=run.dataset, claim_folder=False)
        return 0
    except UserError as exc:
        print(f"error{f' (rank {ranks.rank})' if ranks.world > 1 else ''}: {exc}", file=sys.stderr)
        return 1
    finally:
        if folder is not None:
            folder.release()
        if ranks.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
