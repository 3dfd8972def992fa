"""python -m lenet_ext.export: ONNX (standard operators, run in ONNX Runtime) and torch.export
(our ops, loaded back with torch.export.load), each against our model on real test digits."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lenet_ext import checkpoint, data, export

# Largest |logit difference| accepted: ONNX Runtime's conv/gemm sum in another order than our
# kernels (seen: ~1e-5 on logits of magnitude ~10); the torch.export program runs our own ops.
ONNX_TOL, PT2_TOL = 1e-4, 0.0


@pytest.fixture(scope="module")
def digits(offline_env):
    return data.load(log=lambda m: None).test.images[:500]


@pytest.mark.slow
def test_onnx_runs_in_onnx_runtime(trained_run, digits, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    path = str(tmp_path / "lenet5.onnx")
    assert (
        export.main(
            ["--checkpoint", os.path.join(trained_run, "best.pt"), "--format", "onnx", "--out", path, "--no-check"]
        )
        == 0
    )
    graph = onnx.load(path)
    assert all(op.domain in ("", "ai.onnx") for op in graph.opset_import) and graph.opset_import[0].version >= 17
    assert {n.op_type for n in graph.graph.node} <= {
        "Conv",
        "Sigmoid",
        "AveragePool",
        "Reshape",
        "Gemm",
        "Flatten",
        "MatMul",
        "Add",
    }  # standard operators only
    assert not os.path.exists(path + ".data")  # one self-contained file
    model, _ = checkpoint.model_from_checkpoint(os.path.join(trained_run, "best.pt"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in (1, 7, 500):  # the batch is dynamic
        theirs = session.run(["logits"], {"images": digits[:n].numpy()})[0]
        with torch.inference_mode():
            ours = model(digits[:n]).numpy()
        assert theirs.shape == (n, 10)
        assert np.abs(theirs - ours).max() <= ONNX_TOL
    assert (theirs.argmax(1) == ours.argmax(1)).all()


@pytest.mark.slow
def test_pt2_round_trip_holds_our_ops(trained_run, digits, tmp_path):
    path = str(tmp_path / "lenet5.pt2")
    assert (
        export.main(
            ["--checkpoint", os.path.join(trained_run, "best.pt"), "--format", "pt2", "--out", path, "--no-check"]
        )
        == 0
    )
    program = torch.export.load(path)
    code = program.graph_module.code
    assert "torch.ops.lenet_ext.lenet5_forward" in code and "aten.convolution" not in code
    model, _ = checkpoint.model_from_checkpoint(os.path.join(trained_run, "best.pt"))
    for n in (1, 3, 500):
        with torch.inference_mode():
            assert (program.module()(digits[:n]) - model(digits[:n])).abs().max().item() <= PT2_TOL
    # In a fresh process: the ops come from `import lenet_ext`.
    script = (
        "import torch, lenet_ext; p = torch.export.load(%r); print(tuple(p.module()(torch.rand(4, 1, 28, 28)).shape))"
        % path
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "(4, 10)", out.stderr


@pytest.mark.slow
def test_cli_reports_the_difference(trained_run, tmp_path, offline_env):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lenet_ext.export",
            "--checkpoint",
            os.path.join(trained_run, "best.pt"),
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "m.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **offline_env),
    )
    assert out.returncode == 0, out.stderr
    assert "max |logit difference|" in out.stdout and "Traceback" not in out.stderr
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary file left


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,words",
    [
        (["--format", "tflite"], "invalid choice"),
        (["--format", "onnx", "--opset", "11"], "--opset must be 17 or later"),
        (["--format", "aoti"], "--out must end in .pt2"),
    ],
)
def test_bad_arguments(trained_run, tmp_path, args, words, capsys):
    with pytest.raises(SystemExit):
        export.main(["--checkpoint", os.path.join(trained_run, "best.pt"), "--out", str(tmp_path / "x"), *args])
    assert words in capsys.readouterr().err


@pytest.mark.slow
def test_out_in_a_missing_folder(trained_run, tmp_path, capsys):
    assert (
        export.main(
            [
                "--checkpoint",
                os.path.join(trained_run, "best.pt"),
                "--format",
                "pt2",
                "--out",
                str(tmp_path / "no" / "x.pt2"),
            ]
        )
        == 1
    )
    assert "no such folder" in capsys.readouterr().err
