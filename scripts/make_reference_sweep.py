"""Write sweeps/reference.yaml: the reference-protocol sweep of chapter 5, its LoRA configurations drawn per task.

Each task gets ``N_CONFIGS`` distinct configurations drawn with a seed of its own (``linft.study.draw_adapters``),
so the configurations (and their κ order) differ between tasks. Re-running this script writes the same file.

    .venv/bin/python scripts/make_reference_sweep.py
"""

from pathlib import Path

import yaml

from linft.study import draw_adapters

TASKS = ("mr", "subj", "vader-movies")
N_CONFIGS = 12
N_LAYERS = 6  # MiniLM's blocks

HEADER = """\
# Chapter 5's keystone: does κ of a small calibration kernel predict fine-tuning as the reference study ran it?
# Written by scripts/make_reference_sweep.py (the configurations are drawn per task; edit that script, not this file).
# Protocol (linft.study._reference): LoRA + head fine-tuned with AdamW on n_train examples for `epochs` epochs at one
# learning rate for every configuration (the reference study's 4e-3 with its 6 % warm-up and linear decay, α = r),
# evaluated on the task's whole test split (≤ n_eval); before training, the reference kernel (LoRA only, asymmetric
# SignGD) and the kernel of what is trained (LoRA + head, SignGD) on the first N ∈ calib training examples.
# About 4 minutes a run on one core; two Ray workers on 2 cores; it resumes where it stopped:
#   nohup linft study --config sweeps/reference.yaml --out data/results/study-reference.csv --backend ray \\
#       --num-cpus 2 --no-progress > _build/reference-sweep.log 2>&1 &
"""


def main() -> None:
    doc = {
        "protocol": "reference",
        "name": "reference",
        "model": "minilm",
        "sizes": {"n_train": 2048, "n_eval": 2000, "max_length": 64, "epochs": 2, "lr": 4.0e-3, "batch_size": 32,
                  "warmup": 0.06, "short_fraction": 0.1, "calib": [16, 32, 64, 128, 256], "n_draws": 8,
                  "n_kr": 256, "alpha_ratio": 1.0, "split_seed": 0},
        "tasks": list(TASKS),
        "configs": {task: [a.as_yaml() for a in draw_adapters(N_CONFIGS, seed=1000 + i, n_layers=N_LAYERS)]
                    for i, task in enumerate(TASKS)},
        "seeds": [0, 1, 2, 3],
        "threads": 1,
    }
    out = Path(__file__).resolve().parents[1] / "sweeps" / "reference.yaml"
    out.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=118),
                   encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
