"""The chapters' protocols as functions, so that every chapter reads as prose + calls.

One module per chapter, each tested at smoke size:

- :mod:`linft.experiments.tasks`: the set-up every chapter shares (a LoRA model, tokenized train/eval batches),
  through :func:`linft.runspec.prepare`;
- :mod:`linft.experiments.models_tasks` (chapter 0): the task table, token lengths, LoRA sizes, a sanity run;
- :mod:`linft.experiments.linearization` (chapter 1): the toy width/λ study, the real-vs-linearized sweep;
- :mod:`linft.experiments.anchoring` (chapter 2): gradient-descent runs against the bound, Lipschitz estimates,
  the accuracy/linearity trade-off across tasks (:mod:`linft.experiments.anchoring_runs`: the plan, the GD runs
  and the Lipschitz estimate, re-exported by ``anchoring``);
- :mod:`linft.experiments.kernels` (chapter 3): per-task kernels, the head, per-layer blocks, κ against N,
  target sets, kernel variants, a decoder; :mod:`linft.experiments.kernel_regression` (chapter 3): kernel regression
  against fine-tuning;
- :mod:`linft.experiments.layer_selection` (chapter 4): per-layer kernels, Weyl bounds, the layer advisor
  (:mod:`linft.experiments.layer_kernels`: its kernel side, re-exported by ``layer_selection``).

Functions return tidy DataFrames and, where a chapter quotes numbers in its prose, a ``text`` dict of formatted
strings for :func:`linft.results.glue_all` and a ``headline`` dict for :func:`linft.results.write_results`.
"""

from linft.experiments.tasks import TaskSetup, chapter_spec, prepare_chapter, setup_task

__all__ = ["TaskSetup", "chapter_spec", "prepare_chapter", "setup_task"]
