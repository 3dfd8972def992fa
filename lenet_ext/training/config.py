"""A training run's settings: TrainConfig, frozen, with the defaults of `python -m lenet_ext.train`,
its validation, the flags that may change when a run is resumed, and reading it back from a
checkpoint. A checkpoint stores it as a plain dict (to_dict()), so files stay readable without
this class."""

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ..choices import AUGMENTS, C5_KINDS, DATASETS, IMPLS

OPTIMIZERS = ("adam", "adamw", "sgd")
# t-SNE needs more points than its perplexity; the study and the experiments share this floor.
MIN_TSNE_SAMPLES = 10

# Flags that may be given with --resume: they change where or how the run computes, not what it
# computes (--data-dir must hold the same data: checked by its fingerprint). Any other flag with
# --resume is an error: a resumed run continues with the settings it was started with.
RESUME_OVERRIDES = ("data_dir", "device", "threads", "no_plots", "cuda_graph", "tensorboard")

# Settings a run made before they existed did not record: the values it ran with.
LEGACY_DEFAULTS = {
    "bias": True,
    "c5": "conv",
    "target_acc": 0.99,
    "stop_at_target": False,
    "recipe": "default",
    "augment": "none",
    "rotate": 12.0,
    "zoom": 0.12,
    "shear": 10.0,
    "elastic_alpha": 8.0,
    "elastic_sigma": 4.0,
    "thickness": 0.3,
}

# Training recipes: the settings a recipe gives the flags that are not given on the command line.
# default: the TrainConfig defaults, 30 epochs with shifts and mild random affine maps, the most
# accurate and robust recipe of a search scored on the validation split only (python -m
# lenet_ext.experiments recipes; docs/experiments/recipes). fast: the schedule that reaches 99.0%
# soonest on the CPU, without distortions, ending the run there (chosen on the validation split
# only: docs/performance.md, "Time to accuracy").
RECIPES = {
    "default": {},
    "fast": {"epochs": 5, "batch_size": 256, "lr": 0.04, "shift": 0, "augment": "none", "stop_at_target": True},
}


@dataclass(frozen=True)
class TrainConfig:
    """What a run computes. Field order is the order a checkpoint's "config" dict lists them."""

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    impl: str = "ext"
    epochs: int = 30
    batch_size: int = 64
    test_batch_size: int = 1000
    lr: float = 1e-2
    optimizer: str = "adam"
    shift: int = 2
    valid_size: Optional[int] = None
    seed: int = 1
    dry_run: bool = False
    tsne_samples: int = 2000
    bias: bool = True
    c5: str = "conv"
    target_acc: float = 0.99
    stop_at_target: bool = False
    recipe: str = "default"
    augment: str = "affine"  # comma-separated AUGMENTS, or none: distortions beside the shifts
    rotate: float = 8.0
    zoom: float = 0.08
    shear: float = 8.0
    elastic_alpha: float = 8.0
    elastic_sigma: float = 4.0
    thickness: float = 0.3

    @classmethod
    def keys(cls):
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_args(cls, args) -> "TrainConfig":
        """The settings of a parsed train command line (a dry run is one epoch; --data-dir absolute)."""
        values = {k: getattr(args, k) for k in cls.keys()}
        if values["data_dir"] is not None:
            values["data_dir"] = os.path.abspath(values["data_dir"])
        if values["dry_run"]:
            values["epochs"] = 1
        return cls(**values)

    @classmethod
    def from_saved(cls, saved: Dict[str, Any]) -> "TrainConfig":
        """The settings a checkpoint recorded (its "config" dict), checked: ValueError saying which
        are missing or invalid. Keys it does not know are dropped."""
        values = {**LEGACY_DEFAULTS, **saved}
        missing = [k for k in cls.keys() if k not in values]
        if missing:
            raise ValueError(f"its settings lack {', '.join(missing)}")
        config = cls(**{k: values[k] for k in cls.keys()})
        try:
            config.validate()
        except ValueError as exc:
            raise ValueError(f"its settings are invalid ({exc})") from exc
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "TrainConfig":
        """ValueError with the flag's name and what was expected, for the first setting that is not
        valid (from the command line or a checkpoint); the config itself when all are."""

        def need(ok, message):
            if not ok:
                raise ValueError(message)

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("epochs", "batch_size", "test_batch_size", "tsne_samples", "seed"):
            value = getattr(self, name)
            need(is_int(value), f"--{name.replace('_', '-')} must be an integer, got {value!r}")
        for name in ("epochs", "batch_size", "test_batch_size"):
            need(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        need(
            self.tsne_samples >= MIN_TSNE_SAMPLES,
            f"--tsne-samples must be >= {MIN_TSNE_SAMPLES} (t-SNE needs more points than its perplexity), "
            f"got {self.tsne_samples}",
        )
        lr = self.lr
        need(
            isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0,
            f"--lr must be a positive number, got {lr}",
        )
        need(is_int(self.shift) and 0 <= self.shift <= 8, f"--shift must be in 0..8, got {self.shift}")
        valid = self.valid_size
        need(valid is None or (is_int(valid) and valid >= 0), f"--valid-size must be >= 0, got {valid}")
        target = self.target_acc
        need(
            isinstance(target, (int, float)) and not isinstance(target, bool) and 0 < target <= 1,
            f"--target-acc must be in (0, 1], got {target}",
        )
        need(self.recipe in RECIPES, f"--recipe must be one of {sorted(RECIPES)}, got {self.recipe!r}")
        need(self.dataset in DATASETS, f"--dataset must be one of {sorted(DATASETS)}")
        need(self.impl in IMPLS, f"--impl must be one of {IMPLS}, got {self.impl!r}")
        need(self.optimizer in OPTIMIZERS, f"--optimizer {self.optimizer!r} is unknown")
        need(self.data_dir is None or isinstance(self.data_dir, str), "--data-dir must be a path")
        need(isinstance(self.bias, bool), f"its config's bias must be true or false, got {self.bias!r}")
        need(self.c5 in C5_KINDS, f"its config's c5 must be one of {C5_KINDS}, got {self.c5!r}")
        kinds = self.augment_kinds()
        need(
            kinds is not None,
            f"--augment must be none or a comma-separated list of {', '.join(AUGMENTS)}, got {self.augment!r}",
        )
        for flag, value, low, high, unit in (
            ("--rotate", self.rotate, 0, 90, "degrees"),
            ("--zoom", self.zoom, 0, 0.9, "a fraction"),
            ("--shear", self.shear, 0, 60, "degrees"),
            ("--elastic-alpha", self.elastic_alpha, 0, 100, "pixels"),
            ("--elastic-sigma", self.elastic_sigma, 0.5, 20, "pixels"),
            ("--thickness", self.thickness, 0, 1, "a probability"),
        ):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            need(number and low <= value <= high, f"{flag} must be {unit} in {low}..{high}, got {value!r}")
        return self

    def augment_kinds(self) -> Optional[tuple]:
        """The distortions --augment names (() for none), or None if it names others."""
        if not isinstance(self.augment, str):
            return None
        if self.augment == "none":
            return ()
        kinds = tuple(k.strip() for k in self.augment.split(","))
        return kinds if kinds and all(k in AUGMENTS for k in kinds) and len(set(kinds)) == len(kinds) else None


DEFAULTS = TrainConfig()
