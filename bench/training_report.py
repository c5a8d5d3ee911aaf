"""The bundled model's training record, read from the checkpoint's own provenance: settings,
time and the loss curve.

    python -m bench training [--model demo]
"""
from __future__ import annotations

import argparse

import numpy as np

from napari_diffdenoise import load_model
from napari_diffdenoise.core.model.network import count_parameters

from .common import DOCS, markdown_table, write_report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    prov = model.provenance
    history = prov.get("history", [])
    steps = [h["step"] for h in history]
    train = np.array([h["train_loss"] for h in history])
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    DOCS.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2), tight_layout=True)
    window = 50
    smooth = np.convolve(train, np.ones(window) / window, mode="valid") if len(train) > window else train
    ax.plot(steps[len(steps) - len(smooth):], smooth, lw=1, label=f"train (mean of {window} steps)")
    if val:
        ax.plot(*zip(*val), "o-", ms=2, lw=1, label="validation (fixed held-out batch)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{model.prediction}-MSE")
    ax.legend(fontsize="small")
    fig.savefig(DOCS / "training_loss.png", dpi=120)
    plt.close(fig)

    cfg = prov.get("training", {})
    rows = [[k, str(v)] for k, v in cfg.items()]  # str: the table's float format would show 0.999 as 1.00
    rows += [[key, str(prov[key])] for key in ("device", "pool_size", "init") if prov.get(key) is not None]
    if history:
        rows.append(["training seconds (this stage)", f"{history[-1].get('seconds', 0):.0f}"])
    rows += [["parameters", f"{count_parameters(model.network):,}"], ["prediction", model.prediction],
             ["schedule", f"{model.schedule.kind}, T = {model.schedule.n_steps}"],
             ["architecture", str(model.network.config)], ["data", prov.get("data", "")],
             ["best validation loss", prov.get("best_val_loss")], ["sha256", model.sha256[:16] + "…"]]
    # the one-pass heads were trained after the diffusion network, each by its own recipe: what each checkpoint records
    def steps_of(record: dict) -> str:
        training = record.get("training")
        return str(training.get("steps", "") if isinstance(training, dict) else record.get("steps", ""))

    heads = [[name, str(record.get("recipe", "")), steps_of(record), str(record.get("source_sha256", ""))[:12]]
             for name, record in (("mean head", model.mean_provenance), ("std head", model.std_provenance),
                                  ("sample head", model.sample_provenance)) if record]
    body = (
        f"Model `{args.model}` (package version {prov.get('package_version')}): its diffusion network, trained for "
        f"{prov.get('step')} steps.\n\n"
        + markdown_table(["setting", "value"], rows)
        + "\n\n![loss](training_loss.png)\n"
        + ("\n## The one-pass heads\n\nEach trained after the diffusion network by its own recipe (docs/training.md), "
           "as its provenance in the checkpoint records it.\n\n"
           + markdown_table(["head", "recipe", "steps", "source sha256"], heads) + "\n" if heads else "")
    )
    path = write_report("training", "Training record of the bundled model", body, {"history": history})
    print(path.read_text())


if __name__ == "__main__":
    main()
