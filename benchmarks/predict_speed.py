"""Speed of the preflight prediction against the fine-tuning run it predicts, and of the layer advisor against one
kernel per candidate layer set.

Setup: MiniLM (all-MiniLM-L6-v2), task ``mr``, N = 256 training and M = 256 held-out (validation) examples of at most
64 tokens, LoRA r = 8 (alpha 16) on query/value of all 6 layers, classifier head frozen at its seeded init (so the
trained parameters, and the kernel, are exactly the LoRA matrices). Both sides start from the same loaded model
(``linft.preflight.prepare``); the model load is not counted on either side. In one process, same thread count:

(a) predict   ``linft.preflight.predict_prepared`` as ``linft predict`` runs it (``output="auto"``: for this binary
              task the kernel of the logit difference f1 − f0, what binary cross-entropy depends on; one backward
              pass per example): the eNTK on the N training and M held-out examples (one call),
              the outputs at θ0, the eigen-decomposition, κ/κ_λ, the predicted GD loss curves (160 steps) and the
              kernel-regression accuracy on the M held-out examples; fastest of ``--repeats`` runs;
(b) finetune  the run it predicts, the reference study's schedule on the same N examples: 10 epochs at batch 16
              (160 AdamW updates, lr 1e-3, cross-entropy, ``linft.train.fine_tune``) and its evaluation on the same
              M held-out examples (fine_tune logs steps 0 and 160: forward passes over train and held-out); once.

Line ``predict_s=… finetune_s=… predict_over_finetune=X`` (bar: X ≤ 0.05); ``finetune_updates_s`` is the update
time alone (a lower bound on any fine-tuning run), and ``predict_over_updates`` the ratio against it. More lines put
the same fine-tuning run beside:

- (a) with fewer held-out examples (``--n-test-small``, default 64), and the training-set kernel alone (N examples,
  eigenvalues and κ: what the issue's pilot timed);
- the floor: plain forward + one backward pass (a single summed gradient, no per-example bookkeeping) over the same
  N + M examples in the kernel's own length buckets, which any exact per-example-gradient prediction must at least
  run; the forward passes alone; the N training examples' forward + backward alone;
- (a) under bfloat16 autocast: not exact (κ's relative error against (a) is printed), shown because it is the obvious
  shortcut;
- the tokens each side pushes through the model (both cut every pass to its longest example).

Layer advisor (budget 2 of 6 layers: 15 candidate sets), on the same N training examples:

(c) advisor   ``LayerKernels.compute`` on the model adapted on all 6 layers (one engine pass giving every per-layer
              kernel), then the exact spectrum and the Weyl bounds of all 15 unions and ``select_layers``;
(d) naive     one eNTK (and one eigen-decomposition) per candidate set on a model adapted on that set only. Its cost
              depends on the set's lowest layer (nothing below it is differentiated), so one set per lowest layer
              0, 2, 4 is timed, layers 1 and 3 are interpolated linearly, and the total is Σ_l (5 − l)·t(l) over the
              15 sets (5 − l sets have lowest layer l). Building each set's model is not counted. Extrapolated: said
              so in the output.

Writes benchmarks/results/predict_speed.txt (this stdout).

    .venv/bin/python benchmarks/predict_speed.py               # a few minutes on 2 shared cores
    .venv/bin/python benchmarks/predict_speed.py --quick       # N = M = 16, 16 tokens, 16 updates: smoke test
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import os
import sys
import time
from pathlib import Path

# Threads that sleep when idle (see ntk_speed.py): set before torch loads; override by exporting OMP_WAIT_POLICY.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from linft import models, ntk, predict
from linft.batches import length_chunks
from linft.device import pin_threads
from linft.layers import LayerKernels, select_layers
from linft.preflight import DEFAULT_N_TEST, predict_prepared, prepare
from linft.train import MinibatchSampler, fine_tune

RESULTS = Path(__file__).resolve().parent / "results"
BAR = 0.05


class Tee:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, *args):
        line = " ".join(str(a) for a in args)
        print(line, flush=True)
        self.lines.append(line)


def _finetune(run, steps: int, batch_size: int, lr: float) -> tuple[float, float, dict]:
    """(wall seconds, update seconds, final log row) of AdamW fine-tuning a copy of ``run.model``."""
    model = copy.deepcopy(run.model)
    start = time.perf_counter()
    result = fine_tune(model, run.train, run.test, loss="ce", optimizer="adamw", lr=lr, steps=steps,
                       batch_size=batch_size, seed=run.seed, log_every=steps, track_gap=False, progress=False)
    wall = time.perf_counter() - start
    return wall, result.final["seconds_per_step"] * steps, result.final


def _bare_passes(model, batch: dict, output: str, backward: bool) -> float:
    """Seconds of plain passes over ``batch`` in the kernel's own length buckets, no kernel bookkeeping.

    ``backward``: forward + one ``autograd.grad`` of the summed ``output`` w.r.t. the LoRA matrices (a single summed
    gradient: less than any exact per-example method must do); else forward only, no graph. The floor of the
    prediction's cost on these examples.
    """
    from linft.batches import lengths_of
    from linft.ntk._fast import output_scalars, plan_buckets, slice_examples

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    lora = [p for name, p in model.named_parameters() if "lora_" in name]
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in lora:
        p.requires_grad_(True)
    model.eval()
    start = time.perf_counter()
    try:
        with torch.set_grad_enabled(backward):
            for index, length in plan_buckets(lengths_of(inputs)):
                logits = model(**slice_examples(inputs, index, length, "cpu")).logits
                if backward:
                    torch.autograd.grad(output_scalars(logits, output), lora, allow_unused=True)
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return time.perf_counter() - start


def _set_kernel_seconds(base, batch, layers, targets: str, rank: int, seed: int) -> float:
    """Seconds of the naive route for one layer set: eNTK of a model adapted on ``layers`` only + eigenvalues."""
    model = models.add_lora(copy.deepcopy(base), targets, rank=rank, layers=list(layers), seed=seed, train_head=False)
    start = time.perf_counter()
    K = ntk.empirical_ntk(model, batch, params="lora", per_layer=False)
    predict.kappa_lambda(K)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="smoke test: N = M = 16, 16 tokens, 16 updates")
    ap.add_argument("--repeats", type=int, default=2, help="timed prediction runs; the fastest counts (default 2)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/")
    ap.add_argument("--n-test", type=int, default=None,
                    help="held-out examples M (default: linft predict's default, preflight.DEFAULT_N_TEST)")
    ap.add_argument("--n-test-small", type=int, default=64,
                    help="the smaller held-out set of the second comparison (default 64)")
    args = ap.parse_args(argv)
    n, max_length, steps, budget = (16, 16, 16, 2) if args.quick else (256, 64, 160, 2)
    batch_size, lr, targets, rank, seed = 16, 1e-3, "qv", 8, 0
    out = Tee()
    threads = pin_threads(args.threads)
    load_before = os.getloadavg()[0]
    n_test = args.n_test or (n if args.quick else DEFAULT_N_TEST)
    run = prepare("minilm", "mr", targets=targets, rank=rank, n=n, n_test=n_test, max_length=max_length, seed=seed)
    tokens = run.train["attention_mask"].sum(1).double()
    out(f"# preflight speed: MiniLM + LoRA r={rank} on q,v (all 6 layers, head frozen), task mr, N={n} train + "
        f"M={run.test['labels'].shape[0]} held-out examples, max {max_length} tokens (train mean "
        f"{tokens.mean():.1f}); torch {torch.__version__}, threads={threads}, cpus={os.cpu_count()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    out(f"# load avg {load_before:.1f} at start: other workers share these {os.cpu_count()} cores, so timings are "
        "noisy; compare the ratios of this one run. Model load (not counted on either side): "
        f"{run.seconds:.1f} s")

    predict_runs = []
    report = None
    for _ in range(max(1, args.repeats)):
        report = predict_prepared(run, lam=0.0, steps=steps, progress=False)
        predict_runs.append(report.seconds)
    best = min(predict_runs, key=lambda s: s["predict"])
    runs = ", ".join(f"{s['predict']:.2f}" for s in predict_runs)
    out(f"predict: kernel {best['kernel']:.2f} s + eigen/curves/accuracy {best['eigen']:.3f} s = "
        f"{best['predict']:.2f} s (runs: {runs} s); "
        f"output={report.output} κ={report.kappa:.4g} κ_λ={report.kappa_lambda:.4g} "
        f"KR held-out acc {report.kr_accuracy:.3f} "
        f"[{report.kr_accuracy_low:.3f}, {report.kr_accuracy_high:.3f}]")
    finetune_s, updates_s, final = _finetune(run, steps, batch_size, lr)
    out(f"finetune: {steps} AdamW updates at batch {batch_size}, lr {lr:g} + evaluation = {finetune_s:.2f} s "
        f"(updates alone {updates_s:.2f} s, {updates_s / steps:.3f} s/update); held-out acc "
        f"{final.get('eval_acc', float('nan')):.3f}, train CE {final['task_loss']:.4f}")
    ratio = best["predict"] / finetune_s
    out(f"predict_s={best['predict']:.2f} finetune_s={finetune_s:.2f} predict_over_finetune={ratio:.3f} "
        f"finetune_updates_s={updates_s:.2f} predict_over_updates={best['predict'] / updates_s:.3f} "
        f"threads={threads} torch={torch.__version__} bar<={BAR} {'met' if ratio <= BAR else 'NOT met'}")

    small = min(args.n_test_small, run.test["labels"].shape[0])
    run_small = dataclasses.replace(run, test={k: v[:small] for k, v in run.test.items()})
    small_s = min(predict_prepared(run_small, lam=0.0, steps=steps, progress=False).seconds["predict"]
                  for _ in range(max(1, args.repeats)))
    train_only = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        K = ntk.empirical_ntk(run.model, run.train, params=run.params, per_layer=False, output=report.output)
        predict.kappa_lambda(K)
        train_only.append(time.perf_counter() - start)
    train_s = min(train_only)
    out(f"predict with M={small} held-out examples: {small_s:.2f} s, predict_over_finetune_m{small}="
        f"{small_s / finetune_s:.3f}; training-set kernel alone (N={n}, κ): {train_s:.2f} s, "
        f"kernel_over_finetune={train_s / finetune_s:.3f}")
    joined = {k: torch.cat([run.train[k], run.test[k]]) for k in ("input_ids", "attention_mask")}
    bare_fb = min(_bare_passes(run.model, joined, report.output, True) for _ in range(max(1, args.repeats)))
    bare_f = min(_bare_passes(run.model, joined, report.output, False) for _ in range(max(1, args.repeats)))
    bare_train = min(_bare_passes(run.model, run.train, report.output, True) for _ in range(max(1, args.repeats)))
    out(f"floor, the same N + M examples in the kernel's length buckets with no kernel bookkeeping: forward + one "
        f"backward (a summed gradient) {bare_fb:.2f} s, floor_over_finetune={bare_fb / finetune_s:.3f} "
        f"(predict is {best['predict'] / bare_fb:.2f}× it); forward alone {bare_f:.2f} s, "
        f"forward_over_finetune={bare_f / finetune_s:.3f}; the N training examples' forward + backward alone "
        f"{bare_train:.2f} s, train_floor_over_finetune={bare_train / finetune_s:.3f}")
    bf16_runs = []
    for _ in range(max(1, args.repeats)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = predict_prepared(run, lam=0.0, steps=steps, progress=False)
        bf16_runs.append(bf16.seconds["predict"])
    bf16_s = min(bf16_runs)
    out(f"not exact, for comparison: the same prediction under bfloat16 autocast {bf16_s:.2f} s, "
        f"bf16_predict_over_finetune={bf16_s / finetune_s:.3f}; κ {bf16.kappa:.5g} against {report.kappa:.5g} "
        f"(rel. error {abs(bf16.kappa - report.kappa) / report.kappa:.1e}), KR held-out acc {bf16.kr_accuracy:.3f} "
        f"against {report.kr_accuracy:.3f}")
    example_tokens = int(run.train["attention_mask"].sum() + run.test["attention_mask"].sum())
    lengths = run.train["attention_mask"].sum(1)
    sampler = MinibatchSampler(n, batch_size, seed)  # the minibatches fine_tune drew (same seed)
    update_tokens = sum(len(idx) * int(lengths[idx.cpu()].max()) for idx in (next(sampler) for _ in range(steps)))
    eval_tokens = 2 * sum(len(index) * part["input_ids"].shape[1] for b in (run.train, run.test)
                          for index, part in length_chunks(b, 64))
    out(f"tokens through the model: predict {example_tokens:,} (the N + M examples' own lengths, one forward and "
        f"one backward each); finetune {update_tokens:,} in {steps} updates (forward and backward, each minibatch "
        f"cut to its longest example) + {eval_tokens:,} in its 2 evaluations of N + M (forward only)")

    # ------------------------------------------------------------------------------------------ layer advisor
    start = time.perf_counter()
    lk = LayerKernels.compute(run.model, run.train, head="frozen", kernel="sgd")
    engine_s = time.perf_counter() - start
    sets = list(itertools.combinations(lk.layers, budget))
    start = time.perf_counter()
    for layers in sets:
        lk.exact(layers)
        lk.bounds(layers)
    choice = select_layers(lk, budget, objective="kappa_lambda", method="exhaustive")
    spectra_s = time.perf_counter() - start
    advisor_s = engine_s + spectra_s
    base = models.load("minilm", num_labels=2, seed=seed).model
    lowest = {0: (0, 3), 2: (2, 5), 4: (4, 5)}  # one set per sampled lowest layer
    timed = {low: _set_kernel_seconds(base, run.train, layers, targets, rank, seed) for low, layers in lowest.items()}
    per_low = {0: timed[0], 1: (timed[0] + timed[2]) / 2, 2: timed[2], 3: (timed[2] + timed[4]) / 2, 4: timed[4]}
    count = {low: sum(1 for s in sets if min(s) == low) for low in per_low}
    naive_s = sum(count[low] * per_low[low] for low in per_low)
    out(f"advisor: one engine pass {engine_s:.2f} s + exact spectra and Weyl bounds of all {len(sets)} sets and "
        f"exhaustive selection {spectra_s:.2f} s = {advisor_s:.2f} s; recommends layers {list(choice.layers)} "
        f"(κ_λ={choice.value:.4g})")
    out(f"naive: one eNTK + eigenvalues per set, timed for sets {', '.join(str(s) for s in lowest.values())} "
        f"({', '.join(f'{timed[low]:.2f}' for low in lowest)} s; lowest layers 1, 3 interpolated), extrapolated to "
        f"{len(sets)} sets by lowest layer ({', '.join(f'{count[low]}×l{low}' for low in count)}): "
        f"{naive_s:.1f} s (EXTRAPOLATED, not run)")
    out(f"layers_advisor_s={advisor_s:.2f} naive_per_set_s={naive_s:.1f} (extrapolated) "
        f"naive_over_advisor={naive_s / advisor_s:.1f} sets={len(sets)} budget={budget}")
    out(f"# load avg {os.getloadavg()[0]:.1f} at the end")
    if not args.no_write and not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "predict_speed.txt").write_text("\n".join(out.lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
