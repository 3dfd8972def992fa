"""Every CLI fed bad input (checkpoints, images, IDX files, run folders, flags) answers with one
line and an exit status, never a traceback; good files are still answered beside bad ones."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from hostile import HAS_GPU, cli


def bad_invocations(p):
    train_ = ["lenet_ext.train", "--no-plots"]
    cases = [
        # (args, allowed exit codes, words that stderr must hold)
        (train_ + ["--valid-size", "999999", "--out", p["dir"] + "/v"], {1}, "--valid-size 999999 does not fit"),
        (train_ + ["--valid-size", "-1"], {2}, "--valid-size must be >= 0"),
        (train_ + ["--resume", p["best"]], {1}, "best-validation checkpoint"),
        (train_ + ["--resume", p["run"], "--epochs", "5"], {2}, "--epochs cannot be given with it"),
        (train_ + ["--resume", p["run"], "--out", p["dir"]], {2}, "--out cannot be given"),
        (train_ + ["--resume", p["dir"] + "/nowhere"], {1}, "no such checkpoint"),
        (train_ + ["--resume", p["random"]], {1}, "not a lenet_ext checkpoint"),
        (train_ + ["--resume", p["evil"]], {1}, "refused"),
        (train_ + ["--out", p["file"]], {1}, "is a file"),
        (train_ + ["--out", "/proc/lenet_ext-probe/run"], {1}, "cannot create the folder"),
        (train_ + ["--out", p["run"]], {1}, "already holds a run"),
        (train_ + ["--tsne-samples", "1"], {2}, "--tsne-samples must be >= 10"),
        (train_ + ["--device", "gpu"], {1}, "expected cpu, cuda or cuda:N"),
        (train_ + ["--data-dir", p["dir"] + "/nowhere"], {1}, "no such folder"),
        (train_ + ["--data-dir", p["file"]], {1}, "is a file"),
        (train_ + ["--data-dir", p["dir"]], {1}, "does not hold the four IDX files"),
        (train_ + ["--lr", "nan"], {2}, "--lr must be a positive number"),
        (train_ + ["--target-acc", "1.5"], {2}, "--target-acc must be in (0, 1]"),
        (train_ + ["--dry-run", "--epochs", "3"], {2}, "--epochs cannot be given"),
        (train_ + ["--threads", "0"], {2}, "--threads must be in"),
        (train_ + ["--epochs", "1e3"], {2}, "invalid int value"),
        (["lenet_ext.analyze", p["dir"] + "/nowhere"], {2}, "no such run folder"),
        (["lenet_ext.analyze", p["file"]], {2}, "is a file"),
        (["lenet_ext.analyze", p["badmetrics"]], {1}, "line 1 is not an epoch's metrics"),
        (["lenet_ext.analyze", p["badsummary"]], {1}, "summary.json: not valid JSON"),
        (["lenet_ext.analyze", p["run"], "--device", "tpu"], {1}, "expected cpu, cuda or cuda:N"),
        (["lenet_ext.analyze", p["run"], "--tsne-samples", "3"], {2}, "--tsne-samples must be >= 10"),
        (["lenet_ext.analyze", p["run"], "--checkpoint", "../x.pt"], {2}, "names a file in the run folder"),
        (["lenet_ext.analyze", p["run"], "--checkpoint", "missing.pt"], {1}, "no such checkpoint"),
        (["lenet_ext.predict", "--checkpoint", p["shapes"], p["one"]], {1}, "has shape (84, 100)"),
        (["lenet_ext.predict", "--checkpoint", p["missing"], p["one"]], {1}, "missing c1.bias"),
        (["lenet_ext.predict", "--checkpoint", p["nan"], p["one"]], {1}, "NaN"),
        (["lenet_ext.predict", "--checkpoint", p["random"], p["one"]], {1}, "not a lenet_ext checkpoint"),
        (["lenet_ext.predict", "--checkpoint", p["evil"], p["one"]], {1}, "refused"),
        (["lenet_ext.predict", "--checkpoint", p["dir"], p["one"]], {1}, "is a folder"),
        (["lenet_ext.predict", "--checkpoint", p["best"], p["one"], "--device", "cuda:7x"], {1}, "expected cpu"),
        (["lenet_ext.predict", "--checkpoint", p["best"], p["dot"]], {1}, "too small to hold a digit"),
        (["lenet_ext.predict", "--checkpoint", p["best"], p["huge"]], {1}, "megapixels"),
        (["lenet_ext.predict", "--checkpoint", p["best"], p["dir"]], {1}, "is a folder"),
        (["lenet_ext.predict", "--checkpoint", p["best"], "--idx", p["bomb"], "--index", "0"], {1}, "more than the"),
        (
            ["lenet_ext.predict", "--checkpoint", p["best"], "--idx", p["claims"], "--index", "0"],
            {1},
            "its header claims 10,000,000",
        ),
        (["lenet_ext.predict", "--checkpoint", p["best"], "--idx", p["blank_idx"], "--index", "1"], {1}, "blank"),
        (
            ["lenet_ext.predict", "--checkpoint", p["best"], "--idx", p["blank_idx"], "--index", "7"],
            {1},
            "out of range",
        ),
        (["lenet_ext.predict", "--checkpoint", p["best"]], {2}, "give image files"),
        (["lenet_ext.demo", "--batch-size", "0"], {2}, "--batch-size must be in 1..65536"),
        (["lenet_ext.demo", "--batch-size", str(10**9)], {2}, "--batch-size must be in"),
        (["lenet_ext.demo", "--repeats", "-1"], {2}, "--repeats must be in"),
        (["lenet_ext.demo", "--batch-size", "many"], {2}, "invalid int value"),
        (["lenet_ext.demo", "--device", "xpu"], {1}, "expected cpu, cuda or cuda:N"),
        (["lenet_ext.data", "--data-dir", p["dir"] + "/nowhere"], {1}, "no such folder"),
        (["lenet_ext.serve", "--checkpoint", p["dir"] + "/nowhere.pt"], {1}, "no such checkpoint"),
        (["lenet_ext.serve", "--checkpoint", p["evil"]], {1}, "refused"),
        (["lenet_ext.serve", "--checkpoint", p["nan"]], {1}, "NaN"),
        (["lenet_ext.serve", "--checkpoint", p["best"], "--port", "70000"], {2}, "--port must be in 0..65535"),
        (["lenet_ext.serve", "--checkpoint", p["best"], "--host", "999.1.1.1", "--port", "0"], {1}, "cannot bind"),
        (["lenet_ext.serve", "--checkpoint", p["best"], "--device", "gpu"], {1}, "expected cpu, cuda or cuda:N"),
        (
            ["lenet_ext.export", "--checkpoint", p["random"], "--format", "pt2", "--out", p["dir"] + "/x.pt2"],
            {1},
            "not a lenet_ext checkpoint",
        ),
        (
            ["lenet_ext.export", "--checkpoint", p["shapes"], "--format", "pt2", "--out", p["dir"] + "/x.pt2"],
            {1},
            "has shape",
        ),
        (
            ["lenet_ext.export", "--checkpoint", p["best"], "--format", "pt2", "--out", p["dir"] + "/no/x.pt2"],
            {1},
            "no such folder",
        ),
        (["lenet_ext.export", "--checkpoint", p["best"], "--format", "keras", "--out", "x"], {2}, "invalid choice"),
        (["lenet_ext.export", "--checkpoint", p["best"], "--format", "onnx", "--out", p["dir"]], {2}, "is a folder"),
        (["lenet_ext.experiments", "everything", "--out", p["dir"]], {2}, "invalid choice"),
        (["lenet_ext.experiments", "seeds", "--out", p["dir"], "--seeds", "0"], {2}, "--seeds must be in 1..100"),
        (["lenet_ext.experiments", "seeds", "--out", p["file"]], {1}, "is a file"),
        (
            ["lenet_ext.experiments", "flatten", "--out", p["dir"] + "/exp", "--data-dir", p["dir"] + "/nowhere"],
            {1},
            "no such folder",
        ),
    ]
    if not HAS_GPU:
        cases += [
            (train_ + ["--device", "cuda"], {1}, "no CUDA GPU"),
            (train_ + ["--cuda-graph", "on", "--device", "cpu"], {1}, "needs a CUDA device"),
            (["lenet_ext.demo", "--device", "cuda"], {1}, "no CUDA GPU"),
        ]
    return cases


@pytest.mark.slow
def test_bad_invocations_answer_in_one_line(files, env):
    cases = bad_invocations(files)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda case: cli(case[0], env), cases))
    failures = []
    for (args, codes, words), (code, out, err) in zip(cases, results):
        last = err.strip().splitlines()[-1] if err.strip() else ""
        problems = []
        if "Traceback" in err or "Traceback" in out:
            problems.append("traceback")
        if code not in codes:
            problems.append(f"exit {code}, expected {codes}")
        if words not in err:
            problems.append(f"stderr lacks {words!r}")
        if code == 1 and not last.startswith("error:"):
            problems.append("last line is not 'error: ...'")
        if "weights_only" in err:
            problems.append("passes on torch's weights_only advice")
        if problems:
            failures.append(f"{' '.join(args[:1] + [a[-40:] for a in args[1:]])}: {', '.join(problems)}\n{err[-800:]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_good_files_are_predicted_beside_bad_ones(files, env):
    code, out, err = cli(
        ["lenet_ext.predict", "--checkpoint", files["best"], files["huge"], files["one"], files["dot"]], env
    )
    assert code == 1 and "Traceback" not in err
    assert out.startswith(files["one"] + ": ") and len(out.splitlines()) == 1
    assert err.count("error:") == 2
