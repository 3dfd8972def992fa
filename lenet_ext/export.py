"""Export a trained LeNet-5 to ONNX (standard operators: ONNX Runtime, browsers, OpenVINO) or to a
torch.export program holding our own ops (.pt2).

    python -m lenet_ext.export --checkpoint runs/RUN/best.pt --format onnx --out lenet5.onnx
    python -m lenet_ext.export --checkpoint runs/RUN/best.pt --format pt2 --out lenet5.pt2
    python -m lenet_ext.export --checkpoint runs/RUN/best.pt --format aoti --out lenet5_aoti.pt2

onnx: the torch twin (LeNet5(impl="torch")) with the checkpoint's weights, exported by
      torch.onnx's dynamo exporter as one self-contained file: input "images" (N, 1, 28, 28) float32,
      normalized as in training ((pixel / 255 - 0.1307) / 0.3081), output "logits" (N, classes),
      N dynamic, opset 18 by default (17 or later). Needs `pip install -e ".[export]"` (onnx,
      onnxscript, and onnxruntime for the check below).
pt2:  torch.export of LeNet5(impl="ext") in eval mode: the graph holds lenet_ext's ops
      (lenet5_forward for the default network), with a dynamic batch. Load it with
      `import lenet_ext; torch.export.load("lenet5.pt2").module()(images)`: the ops must be
      registered, so lenet_ext must be imported first.
aoti: the same program compiled ahead of time by AOTInductor into a package (.pt2) that runs
      without Python: lenet5_predict (examples/cpp/lenet5_predict.cpp) loads it in C++ with our op
      library linked (the graph calls lenet5_forward through the dispatcher). From Python:
      torch._inductor.aoti_load_package(path), after import lenet_ext. Compiling needs the C++
      compiler (about half a minute).

Each is checked after writing, against our model on test digits (the embedded MNIST digits, or
--data-dir's), and the largest difference in logits is printed.
"""

import argparse
import io
import os
import sys
import tempfile

import numpy as np
import torch

from . import checkpoint, cli, data, fileio
from .errors import UserError
from .models import LeNet5

FORMATS = ("onnx", "pt2", "aoti")


def twin(model: LeNet5) -> LeNet5:
    """The same network from torch.nn layers, same weights, eval mode."""
    ref = LeNet5(impl="torch", num_classes=model.output.out_features, bias=model.bias, c5=model.c5_kind)
    ref.load_state_dict(model.state_dict())
    return ref.eval()


def export_onnx(model: LeNet5, path: str, opset: int = 18) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f'--format onnx needs the export extra: pip install -e ".[export]" ({exc.name} is missing)'
        ) from None
    ref = twin(model).cpu()
    example = torch.zeros(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1)
    import contextlib
    import logging

    quiet = logging.getLogger("torch.onnx")  # it warns about torchvision ops it need not register
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its steps
            program = torch.onnx.export(
                ref,
                (example,),
                None,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes={"images": {0: batch}},
                opset_version=opset,
                dynamo=True,
                external_data=False,
            )
    finally:
        quiet.setLevel(level)
    if program is None:  # torch.onnx.export with dynamo=True returns the program
        raise UserError("torch.onnx.export returned no program to save")
    _write(path, lambda f: program.save(f, external_data=False), ".onnx")


def export_pt2(model: LeNet5, path: str):
    model = model.cpu().eval().requires_grad_(False)  # no gradient wanted: the fused inference op
    example = torch.zeros(2, 1, 28, 28)
    program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}})
    _write(path, lambda f: torch.export.save(program, f), ".pt2")
    return program


def export_aoti(model: LeNet5, path: str) -> None:
    """The pt2 program (inference mode: lenet5_forward, dynamic batch) compiled by AOTInductor."""
    program = torch.export.export(
        model.cpu().eval().requires_grad_(False),
        (torch.zeros(2, 1, 28, 28),),
        dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
    )
    from torch._inductor import aoti_compile_and_package

    _write(path, lambda f: aoti_compile_and_package(program, package_path=f), ".pt2")


def _write(path: str, save, suffix: str) -> None:
    """save(filename) into a temporary file beside path, then renamed: a failed export leaves nothing."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--out {path}: no such folder {folder}")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, fileio.file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_onnx(path: str, model: LeNet5, images: torch.Tensor) -> float:
    """Largest |logit difference| between ONNX Runtime on the file and our model."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    theirs = session.run(["logits"], {"images": images.numpy().astype(np.float32)})[0]
    with torch.inference_mode():
        ours = model.cpu().eval()(images).numpy()
    return float(np.abs(theirs - ours).max())


def check_pt2(path: str, model: LeNet5, images: torch.Tensor) -> float:
    program = torch.export.load(path)
    with torch.inference_mode():
        theirs = program.module()(images)
        ours = model.cpu().eval()(images)
    return float((theirs - ours).abs().max())


def check_aoti(path: str, model: LeNet5, images: torch.Tensor) -> float:
    from torch._inductor import aoti_load_package

    runner = aoti_load_package(path)
    with torch.inference_mode():
        theirs = runner(images)
        ours = model.cpu().eval()(images)
    return float((theirs - ours).abs().max())


def check_digits(config, data_dir, n: int = 1000) -> torch.Tensor:
    """Real test digits for the check: --data-dir's, else the run's, else the embedded ones."""
    folder = data_dir or (config.get("data_dir") if isinstance(config, dict) else None)
    try:
        ds = data.load(
            config.get("dataset", "mnist") if isinstance(config, dict) else "mnist",
            folder,
            log=lambda m: None,
            download_ok=False,
        )
    except data.DataError:
        ds = data.load("mnist", None, log=lambda m: None, download_ok=False)
    return ds.test.images[:n]


def _main_impl(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lenet_ext.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a best.pt or last.pt from python -m lenet_ext.train")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx, pt2 or aoti")
    parser.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 or later (default: 18)")
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="test digits for the check (default: the run's data, else the embedded digits)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the check against our model")
    args = parser.parse_args(argv)
    if args.opset < 17:
        parser.error(f"--opset must be 17 or later, got {args.opset}")
    if os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a folder; give a file name")
    model, state = checkpoint.model_from_checkpoint(args.checkpoint)
    if args.format == "aoti" and not args.out.endswith(".pt2"):
        parser.error(f"--format aoti writes a .pt2 package: --out must end in .pt2, got {args.out}")
    if args.format == "onnx":
        export_onnx(model, args.out, args.opset)
    elif args.format == "pt2":
        export_pt2(model, args.out)
    else:
        export_aoti(model, args.out)
    size = os.path.getsize(args.out)
    line = f"wrote {args.out} ({size / 1024:.0f} KB, {args.format})"
    if not args.no_check:
        images = check_digits(state.get("config"), args.data_dir)
        try:
            check = {"onnx": check_onnx, "pt2": check_pt2, "aoti": check_aoti}[args.format]
            diff = check(args.out, model, images)
            line += f"; against our model on {len(images):,} test digits: max |logit difference| {diff:.2e}"
        except ImportError:
            line += "; not checked (pip install onnxruntime to check it)"
    print(line)
    return 0


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
