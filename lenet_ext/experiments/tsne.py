"""tsne: a grid of t-SNE settings on the same F6 features, scored by trustworthiness and k-NN
accuracy in 2-D against k-NN in the 84-d space; PCA (and UMAP if installed)."""

import os
import time

import numpy as np
import torch

from ..plots import pyplot, save
from .context import Context
from .tables import Result, md_table, write_results

TITLE = "t-SNE settings"


def _tsne(features, perplexity, learning_rate, iterations, init, seed):
    import inspect

    from sklearn.manifold import TSNE

    iters = "max_iter" if "max_iter" in inspect.signature(TSNE.__init__).parameters else "n_iter"
    return TSNE(
        n_components=2,
        perplexity=perplexity,
        learning_rate=learning_rate,
        init=init,
        random_state=seed,
        **{iters: iterations},
    ).fit_transform(features)


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k + 1).fit(points, labels)
    neighbours = knn.kneighbors(points, return_distance=False)[:, 1:]
    votes = labels[neighbours]
    pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
    return float((pred == labels).mean())


def measure(ctx: Context) -> Result:
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    impl = ctx.args.impl or "ext"
    run = ctx.train("model-seed1", ctx.config(impl=impl, seed=1))
    test = run.dataset.test
    n = min(ctx.args.tsne_samples, len(test))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(test), n, replace=False))
    with torch.inference_mode():
        run.model.eval()
        features = run.model.features(test.images[torch.from_numpy(pick)].to(ctx.device)).double().cpu().numpy()
    labels = test.labels.cpu().numpy()[pick]
    knn84 = knn_accuracy(features, labels)
    base = dict(perplexity=30.0, learning_rate="auto", iterations=1000, init="pca", seed=0)
    grid = [dict(base, perplexity=p, learning_rate=lr) for p in (5.0, 30.0, 100.0) for lr in (10.0, 200.0, "auto")]
    grid += [dict(base, iterations=it) for it in (250, 500)]
    grid += [dict(base, init="random"), dict(base, seed=1), dict(base, seed=2)]
    rows, embeddings = [], []
    for setting in grid:
        perplexity = min(setting["perplexity"], (n - 1) / 3)
        t0 = time.perf_counter()
        xy = _tsne(
            features, perplexity, setting["learning_rate"], setting["iterations"], setting["init"], setting["seed"]
        )
        rows.append(
            {
                "method": "t-SNE",
                **setting,
                "perplexity": perplexity,
                "trustworthiness": trustworthiness(features, xy, n_neighbors=10),
                "knn_2d": knn_accuracy(xy, labels),
                "knn_84d": knn84,
                "seconds": time.perf_counter() - t0,
            }
        )
        embeddings.append(xy)
    xy = PCA(n_components=2, random_state=0).fit_transform(features)
    rows.append(
        {
            "method": "PCA",
            "trustworthiness": trustworthiness(features, xy, n_neighbors=10),
            "knn_2d": knn_accuracy(xy, labels),
            "knn_84d": knn84,
        }
    )
    pca_xy = xy
    try:
        import umap  # optional extra

        xy = umap.UMAP(random_state=0).fit_transform(features)
        rows.append(
            {
                "method": "UMAP",
                "trustworthiness": trustworthiness(features, xy, n_neighbors=10),
                "knn_2d": knn_accuracy(xy, labels),
                "knn_84d": knn84,
            }
        )
    except ImportError:
        pass
    return Result(
        rows,
        ctx.header(),
        {
            "n": n,
            "knn84": knn84,
            "test_acc": run.history[-1]["test_acc"],
            "labels": labels,
            "embeddings": embeddings,
            "pca_xy": pca_xy,
            "grid": len(grid),
        },
    )


def report(folder: str, result: Result) -> None:
    rows, extra = result.rows, result.extra
    n, knn84, labels, embeddings, pca_xy = (extra[k] for k in ("n", "knn84", "labels", "embeddings", "pca_xy"))

    def fmt(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    body = (
        f"t-SNE of the F6 features (84-d) of {n:,} test digits from one trained model (test accuracy "
        f"{100 * extra['test_acc']:.2f}%). Trustworthiness (10 neighbours; 1 = every 2-D neighbour is "
        f"an 84-d neighbour) and leave-one-out 5-NN accuracy in 2-D, against 5-NN in the 84-d space: "
        f"{100 * knn84:.2f}%.\n\n"
    )
    body += md_table(
        ["method", "perplexity", "learning rate", "iterations", "init", "seed", "trustworthiness", "5-NN 2-D (%)", "s"],
        [
            [
                r["method"],
                fmt(r.get("perplexity", "-")),
                fmt(r.get("learning_rate", "-")),
                r.get("iterations", "-"),
                r.get("init", "-"),
                r.get("seed", "-"),
                f"{r['trustworthiness']:.4f}",
                f"{100 * r['knn_2d']:.2f}",
                f"{r['seconds']:.1f}" if "seconds" in r else "-",
            ]
            for r in rows
        ],
    )
    write_results(folder, TITLE, result, body)
    plt = pyplot()
    fig, axes = plt.subplots(3, 4, figsize=(15, 11))
    panels = list(zip(rows[:9], embeddings[:9])) + [(rows[-2 if len(rows) > extra["grid"] + 1 else -1], pca_xy)]
    cmap = plt.get_cmap("tab10")
    for ax, (row, xy) in zip(axes.flat, panels):
        ax.scatter(xy[:, 0], xy[:, 1], s=3, c=[cmap(int(c)) for c in labels])
        name = (
            f"perplexity {row['perplexity']:g}, lr {fmt(row['learning_rate'])}"
            if row["method"] == "t-SNE"
            else row["method"]
        )
        ax.set_title(f"{name}\ntrust {row['trustworthiness']:.3f}, 5-NN {100 * row['knn_2d']:.1f}%", fontsize=8)
        ax.set(xticks=[], yticks=[])
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"t-SNE of the F6 layer ({n:,} test digits): perplexity × learning rate, and PCA", fontsize=10)
    save(fig, os.path.join(folder, "tsne_grid.png"))
