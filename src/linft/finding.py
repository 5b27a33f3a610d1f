"""What the book's keystone study found about its own predictor, shipped with the package for ``linft predict``.

``linft predict`` reports κ for one configuration; whether κ means anything depends on how well it ranked LoRA
configurations in chapter 5's reference-protocol study. That finding is computed from the committed study CSV by
``scripts/update_finding.py`` (:func:`linft.experiments.reference_study.finding`) and stored here as
``study_finding.json``; a test recomputes it from the CSV, so it cannot go stale. Its scope (model, tasks, sizes,
runs) is part of it: a finding on MiniLM and three sentiment/subjectivity tasks says little about another model.
"""

from __future__ import annotations

import json
import math
from importlib import resources

__all__ = ["FINDING_FILE", "load_finding", "finding_text"]

#: the file inside the package
FINDING_FILE = "study_finding.json"


def load_finding() -> dict | None:
    """The shipped finding (a dict, see :func:`linft.experiments.reference_study.finding`), or None when absent."""
    try:
        text = resources.files("linft").joinpath(FINDING_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)


def _number(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:+.2f}"


def finding_text(finding: dict | None) -> str:
    """One sentence: how well κ ranked configurations in the book's study, and on what."""
    if not finding:
        return "the book's study of how well κ ranks LoRA configurations is not shipped with this install"
    scope = finding["scope"]
    return (f"in the book's reference-protocol study ({scope['model']}, tasks {', '.join(scope['tasks'])}, "
            f"{scope['runs']} runs, {scope['configs']} configurations, fine-tuning on {scope['n_train']:,} examples), "
            f"log κ of the reference kernel (LoRA, asymmetric SignGD) at N = {finding['n']} ranked configurations by "
            f"held-out accuracy with pooled Spearman ρ = {_number(finding['rho'])} "
            f"[{_number(finding['low'])}, {_number(finding['high'])}] (the claim: ρ < 0): {finding['verdict']}")
