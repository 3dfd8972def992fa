"""The names a setting can take, shared by the model (models), the data (data) and a run's settings
(training.config), so that the settings need neither: this module imports nothing."""

IMPLS = ("ext", "torch")  # our kernels, or the same network from torch.nn layers
C5_KINDS = ("conv", "linear")  # C5 as a 5x5 convolution, or s4 flattened into a linear layer
DATASETS = ("mnist",)  # data.DATASETS holds where each is found
AUGMENTS = ("affine", "elastic", "thickness")  # train --augment: distortions beside the shifts
