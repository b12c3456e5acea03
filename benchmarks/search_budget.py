"""The latent-search budget of ADGAN / AnoGAN: the label-free convergence check picks it; test AUROC is drawn beside it.

Trains the experiment's GAN (params.yaml's settings) on one normal digit, then scores, at every budget of the grid
(k steps × n_seed restarts, at params.yaml's lr_z unless the grid gives one), three sets:
- G's own samples and the normal calibration split: the convergence check of the report (tasks.reports.evaluation):
  the loss left on samples that are reachable by construction, as a share of the loss on normal data. The budget
  this benchmark picks is the smallest k × n_seed whose share is at most the report's warning level (25 %). That rule
  reads no test data and no labels;
- synthetic anomalies made from training normals only (models.selection, the label-free signal of epoch selection)
  against the same calibration normals: the selection AUROC at each budget, and a second label-free rule, the
  budget with the highest selection AUROC;
- a seeded subset of the test split, for the figure only: AUROC against k × n_seed, with the share on a second axis.
  Nothing is chosen from it.
Then, at --theta-budget, the method's own per-sample generator tuning (lr_θ > 0) beside lr_θ = 0, at step sizes that
move the weights (the seed's 6e-9 moves them by float32 rounding only).
Writes the figure (--figure) and prints one JSON object last.

    python benchmarks/search_budget.py --digit 8
    python benchmarks/search_budget.py --quick      # the smoke overlay's tiny settings, a small grid
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import common

log = common.log
# k:n_seed[:lr_z] (lr_z: params.yaml's unless given)
DEFAULT_GRID = ["19:1", "19:3", "50:1", "50:3", "100:1", "100:3", "200:1", "500:1", "100:1:0.1", "200:1:0.1", "500:1:0.1", "200:1:0.2"]


def budget(item: str) -> tuple[int, int, float | None]:
    """'k:n_seed[:lr_z]' -> (k, n_seed, lr_z or None for params.yaml's)."""
    parts = item.split(":")
    return int(parts[0]), int(parts[1]), float(parts[2]) if len(parts) > 2 else None


def figure(rows: list[dict], theta_rows: list[dict], path: Path, title: str, limit: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, auroc_ax = plt.subplots(figsize=(9, 6.5))
    series = sorted({(r["n_seeds"], r["lr_z"]) for r in rows})
    for n, lr_z in series:
        part = [r for r in rows if (r["n_seeds"], r["lr_z"]) == (n, lr_z)]
        line = auroc_ax.plot([r["k"] * n for r in part], [r["test_auroc"] for r in part], "o-", label=f"test AUROC, n_seed {n}, lr_z {lr_z:g}")[0]
        auroc_ax.plot([r["k"] * n for r in part], [r["selection_auroc"] for r in part], "^:", color=line.get_color(),
                      label=f"label-free selection AUROC, n_seed {n}, lr_z {lr_z:g}")
    for r in theta_rows:
        auroc_ax.plot(r["k"] * r["n_seeds"], r["test_auroc"], "*", markersize=11, label=f"test AUROC, k {r['k']}, n_seed {r['n_seeds']}, lr_θ {r['lr_theta']:g}")
    budgets = sorted({r["k"] * r["n_seeds"] for r in rows + theta_rows})
    auroc_ax.set_xscale("log")
    auroc_ax.set_xticks(budgets, [str(b) for b in budgets])
    auroc_ax.minorticks_off()
    auroc_ax.set_xlabel("search budget k × n_seed (Adam steps per sample)")
    auroc_ax.set_ylabel("AUROC (test: for understanding, chooses nothing)")
    ratio_ax = auroc_ax.twinx()
    for i, (n, lr_z) in enumerate(series):
        part = [r for r in rows if (r["n_seeds"], r["lr_z"]) == (n, lr_z)]
        ratio_ax.plot([r["k"] * n for r in part], [100 * r["convergence_ratio"] for r in part], "s--", color="grey", alpha=0.4 + 0.6 * i / max(len(series) - 1, 1),
                      label=f"loss left on G's own samples, % of normal (n_seed {n}, lr_z {lr_z:g})")
    ratio_ax.axhline(100 * limit, color="grey", linewidth=0.8, linestyle=":", label=f"the report's warning level ({limit:.0%})")
    ratio_ax.set_ylabel("loss left on G's own samples (% of the loss on normal data)")
    ratio_ax.set_ylim(bottom=0)
    handles = auroc_ax.get_legend_handles_labels()[0] + ratio_ax.get_legend_handles_labels()[0]
    fig.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower center", ncol=2, frameon=False)
    auroc_ax.set_title(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.03 * (len(handles) + 1) / 2 + 0.02, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--experiment", default="mnist-adgan", help="an adgan/anogan experiment on MNIST (default mnist-adgan)")
    parser.add_argument("--digit", type=int, default=None, help="the normal digit (default: params.yaml's normal_classes)")
    parser.add_argument("--grid", nargs="+", default=None, help="k:n_seed[:lr_z] budgets (default: 19:1 to 500:1, lr_z params.yaml's, 0.1, 0.2; --quick: three)")
    parser.add_argument("--generated", type=int, default=None, help="G's own samples searched (default 200; --quick 16)")
    parser.add_argument("--calibration", type=int, default=None, help="calibration normals searched (default 500; --quick 16)")
    parser.add_argument("--test", type=int, default=None, help="test images searched for the figure (a seeded subset; default 1000; --quick 32)")
    parser.add_argument("--theta", type=float, nargs="*", default=None, help="lr_θ > 0 arms (default 1e-5 1e-4; --quick 1e-4)")
    parser.add_argument("--theta-budget", default=None, help="k:n_seed of the lr_θ arms (default 19:1; --quick 3:1)")
    parser.add_argument("--figure", type=Path, default=None, help="the figure's path (default outputs/benchmarks/search_budget_<experiment>_digit<d>.png)")
    args = parser.parse_args()
    loaded = common.settings(args)
    from models.registry import get_detector
    from models.selection import SelectionSet, subset, synthetic_anomalies
    from tasks.adapters import load_prepared
    from tasks.reports.evaluation import UNFINISHED_SEARCH_RATIO, search_convergence
    from tasks.reports.metrics import ranking_metrics

    quick = args.quick
    grid = [budget(item) for item in (args.grid or (["3:1", "6:1", "6:1:0.1"] if quick else DEFAULT_GRID))]
    theta_k, theta_n = (int(v) for v in (args.theta_budget or ("3:1" if quick else "19:1")).split(":"))
    thetas = args.theta if args.theta is not None else ([1e-4] if quick else [1e-5, 1e-4])
    n_gen, n_cal, n_test = args.generated or (16 if quick else 200), args.calibration or (16 if quick else 500), args.test or (32 if quick else 1000)
    base_exp = loaded.params.experiment(args.experiment)
    if base_exp.model.kind not in ("adgan", "anogan"):
        parser.error(f"{args.experiment} is a '{base_exp.model.kind}' model: this benchmark needs a latent-search model (adgan, anogan)")
    digit = args.digit if args.digit is not None else loaded.params.prepare[base_exp.data].normal_classes[0]
    params, changes = common.one_class(loaded, args.experiment, digit)
    exp = params.experiment(args.experiment)
    with common.workspace():
        data = load_prepared(common.prepare(params, exp.data))
        detector = get_detector(exp.model.kind)(exp.model, data.input_spec)
        start = time.perf_counter()
        detector.fit(np.asarray(data.train), progress=False)
        train_seconds = time.perf_counter() - start
        generated = detector.sample(n_gen, seed=123)  # reachable by construction
        calib = np.asarray(data.calib)[subset(np.arange(len(data.calib)), n_cal, seed=0)]
        selection = SelectionSet(calib, synthetic_anomalies(np.asarray(data.train), n_cal, seed=exp.model.training.seed), "label_free")
        test_idx = subset(np.arange(len(data.test)), n_test, seed=0)
        test, labels = np.asarray(data.test)[test_idx], np.asarray(data.test_labels)[test_idx]
        search = exp.model.search

        def measure(k: int, n: int, lr_z: float | None, lr_theta: float, with_convergence: bool) -> dict:
            lr_z = search.lr_z if lr_z is None else lr_z
            detector.config = exp.model.replace(search=search.replace(steps=k, n_seeds=n, lr_z=lr_z, lr_theta=lr_theta))
            start = time.perf_counter()
            row = {"k": k, "n_seeds": n, "lr_z": lr_z, "lr_theta": lr_theta}
            if with_convergence:
                gen_loss, cal_loss = detector.score(generated), detector.score(calib)
                row.update(convergence_ratio=search_convergence(gen_loss, cal_loss)["generated_to_normal_loss_ratio"],
                           generated_loss=float(gen_loss.mean()), calibration_loss=float(cal_loss.mean()),
                           selection_auroc=selection.auroc(cal_loss, detector.score(selection.anomalies)))
            row["test_auroc"] = ranking_metrics(labels, detector.score(test))["auroc"]
            row["seconds"] = time.perf_counter() - start
            log.info("k = %3d  n_seed = %d  lr_z = %-5g  lr_θ = %-6g  loss left on G's samples %s  selection AUROC %s  test AUROC %.4f  (%.0fs)",
                     k, n, lr_z, lr_theta, f"{100 * row['convergence_ratio']:.1f} % of normal" if with_convergence else "-",
                     f"{row['selection_auroc']:.4f}" if with_convergence else "-", row["test_auroc"], row["seconds"])
            return row

        rows = [measure(k, n, lr_z, 0.0, True) for k, n, lr_z in grid]
        theta_rows = [measure(theta_k, theta_n, None, lr, False) for lr in thetas]
        same = [r for r in rows if (r["k"], r["n_seeds"], r["lr_z"]) == (theta_k, theta_n, search.lr_z)]
        theta_rows.insert(0, same[0] if same else measure(theta_k, theta_n, None, 0.0, False))  # the lr_θ = 0 row they are compared with
    finished = [r for r in rows if r["convergence_ratio"] <= UNFINISHED_SEARCH_RATIO]
    chosen = min(finished, key=lambda r: (r["k"] * r["n_seeds"], r["n_seeds"], r["lr_z"])) if finished else None
    by_selection = max(rows, key=lambda r: (r["selection_auroc"], -r["k"] * r["n_seeds"]))  # the cheaper budget on a tie
    path = args.figure or common.REPO / "outputs" / "benchmarks" / f"search_budget_{args.experiment}_digit{digit}.png"
    figure(rows, theta_rows[1:], path, f"{args.experiment}, digit {digit}: search budget; "
           f"{len(test)} test images", UNFINISHED_SEARCH_RATIO)
    log.info("figure: %s", path)
    common.emit("search_budget", loaded, {
        "experiment": args.experiment, "digit": digit, "design": {"changes": changes},
        "rule": f"the smallest k × n_seed whose loss on G's own samples is at most {UNFINISHED_SEARCH_RATIO:.0%} of the loss on normal calibration data",
        "chosen_by_convergence": None if chosen is None else {"k": chosen["k"], "n_seeds": chosen["n_seeds"], "lr_z": chosen["lr_z"]},
        "rule_selection": "the budget with the highest AUROC of calibration normals against synthetic anomalies made from training normals",
        "chosen_by_selection": {"k": by_selection["k"], "n_seeds": by_selection["n_seeds"], "lr_z": by_selection["lr_z"]},
        "params_budget": {"k": search.steps, "n_seeds": search.n_seeds, "lr_z": search.lr_z, "lr_theta": search.lr_theta},
        "samples": {"generated": n_gen, "calibration": len(calib), "synthetic_anomalies": len(selection.anomalies), "test": len(test)},
        "train_seconds": train_seconds, "rows": rows, "theta_rows": theta_rows, "figure": str(path),
    })


if __name__ == "__main__":
    main()
