"""The reference study's claims, one row each: what tests it here, the number, a computed verdict, the evidence.

The reference study (Rahimi Afzal et al. 2025, *Linearization Explains Fine-Tuning in Large Language Models*)
makes nine claims about LoRA fine-tuning (:data:`CLAIMS`).
:func:`claims_table` reads the chapters' results files (``<chapter>-<scale>.json``, written by
:func:`linft.results.write_results`) and gives each claim a verdict, one of :data:`VERDICTS`:

- a chapter may judge a claim itself: a ``"claims"`` mapping in its results,
  ``{claim_id: {"verdict", "evidence", "section"}}`` (``claim_id``: the claim's number as a string, e.g. ``"9"``,
  or its slug, e.g. ``"layer-selection"``; ``evidence``: the numbers behind the verdict, in words; ``section``: a
  heading or MyST label of the chapter's page, or ``"page#anchor"``). Such an entry wins;
- otherwise the verdict is computed here from the chapter's headline numbers, with the pass bars the chapter
  stated (or, where a chapter stated none, the bar written in the claim's ``measurement``);
- a chapter that has not run, or a number it did not write, gives ``"not yet tested"`` and says why.

Each row links to the section of the book with the evidence (``evidence link``: Markdown links to the rendered
HTML pages, ``page.html#anchor``, with the anchor Sphinx derives from the heading or label). :func:`to_html` renders
the table with working links, :func:`verdict_counts` counts the verdicts.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from linft import LinftError
from linft.bars import AGREEMENT_BAR, GAP_RATIO_BAR, KERNEL_CHANGE_BAR, LOSS_ERROR_BAR  # defined once, re-exported
from linft.results import load_results, results_dir
from linft.stats import verdict

__all__ = ["VERDICTS", "Section", "Claim", "CLAIMS", "PAGES", "claims_table", "verdict_counts", "to_html",
           "summary_text", "chapter_claims", "anchor_id", "AGREEMENT_BAR", "LOSS_ERROR_BAR", "GAP_RATIO_BAR",
           "KERNEL_CHANGE_BAR"]

VERDICTS = ("holds", "partly", "does not hold", "not yet tested")
"""The four verdicts, strongest first."""

COLUMNS = ["claim", "measurement", "number", "verdict", "evidence link"]

# The bars (linft.bars) are used when a chapter's results do not carry their own.

PAGES = {"ch0": "ch0-models-and-tasks", "ch1": "ch1-linearization", "ch2": "ch2-anchored-bound", "ch3": "ch3-ntk",
         "ch4": "ch4-layer-selection"}
"""The book page (``book/chapters/<page>``) of each chapter id; others are looked up in ``_toc.yml``."""

_WORDS = {"holds": "holds", "held": "holds", "partly": "partly", "partly holds": "partly",
          "holds only in part": "partly", "holds in part": "partly", "in part": "partly",
          "does not hold": "does not hold", "did not hold": "does not hold", "not yet tested": "not yet tested"}
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def anchor_id(text: str) -> str:
    """The HTML id Sphinx (docutils ``make_id``) gives a section with this heading or a target with this label."""
    text = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-z0-9]+", "-", " ".join(text.split()))
    return re.sub(r"^[^a-z]+|[^a-z0-9]+$", "", text)


def _page_of(chapter: str) -> str | None:
    toc = Path("_toc.yml")
    if toc.exists():
        found = re.findall(rf"book/chapters/({re.escape(chapter)}-[\w.-]+)", toc.read_text())
        if found:
            return found[0]
    return PAGES.get(chapter)


@dataclass(frozen=True)
class Section:
    """A section of a chapter's page: ``heading`` is its heading text or MyST label, as written in the notebook."""

    chapter: str
    heading: str

    @property
    def page(self) -> str | None:
        return _page_of(self.chapter)

    @property
    def href(self) -> str:
        """``<page>.html#<anchor>``, relative to the chapters' folder of the rendered book."""
        page = self.page
        if page is None:
            raise LinftError(f"no page known for chapter {self.chapter!r}: add it to linft.claims.PAGES or _toc.yml")
        return f"{page}.html#{anchor_id(self.heading)}"

    @property
    def title(self) -> str:
        """The heading, or a MyST label made readable (``sec-ch4-weyl`` → ``weyl``)."""
        if " " in self.heading.strip():
            return self.heading
        return re.sub(rf"^(sec-)?({re.escape(self.chapter)}-)?", "", self.heading).replace("-", " ") or self.heading

    def markdown(self) -> str:
        return f"[{self.chapter} § {self.title}]({self.href})"


class _Untested(Exception):
    """A claim cannot be judged: the message says which chapter or number is missing."""


@dataclass
class _Outcome:
    passed: int
    total: int
    number: str
    word: str | None = None  # a verdict the chapter computed itself, used instead of passed/total
    links: str | None = None  # evidence links, instead of the claim's sections


@dataclass(frozen=True)
class Claim:
    """One claim of the reference study, how it is tested here, and where the evidence is.

    ``assess`` maps the chapters' numbers (``{chapter: numbers}``, possibly missing chapters) to an outcome and
    raises when what it needs is missing; ``None`` marks a claim no existing chapter tests (``pending`` says which
    will).
    """

    id: int
    slug: str
    claim: str
    measurement: str
    sections: tuple[Section, ...]
    assess: Callable | None = field(default=None, repr=False)
    pending: str = ""


class _Numbers:
    """The chapters' numbers with lookups that raise :class:`_Untested` naming what is missing."""

    def __init__(self, numbers: dict, scale: str):
        self.numbers, self.scale = numbers, scale

    def get(self, chapter: str, *keys):
        if chapter not in self.numbers:
            raise _Untested(f"{chapter}-{self.scale}.json not found: run chapter {_page_of(chapter) or chapter} at "
                            f"scale {self.scale!r}")
        value = self.numbers[chapter]
        for depth, key in enumerate(keys):
            if not isinstance(value, dict) or key not in value:
                raise _Untested(f"{chapter}'s results have no {'/'.join(keys[: depth + 1])}")
            value = value[key]
        return value

    def bar(self, chapter: str, key: str, default: float, *path) -> float:
        try:
            return float(self.get(chapter, *path, key))
        except (_Untested, TypeError, ValueError):
            return default


def _pct(x: float) -> str:
    return f"{float(x):.1%}"


def _g(x: float, digits: int = 2) -> str:
    return f"{float(x):.{digits}g}"


def _kr_rows(n: _Numbers) -> list[dict]:
    rows = n.get("ch3", "kernel_regression", "rows")
    if not rows:
        raise _Untested("ch3's kernel-regression study has no rows")
    return rows


def _kr_bars(n: _Numbers) -> tuple[float, float]:
    return (n.bar("ch3", "agreement_bar", AGREEMENT_BAR, "kernel_regression"),
            n.bar("ch3", "loss_error_bar", LOSS_ERROR_BAR, "kernel_regression"))


def _sources(*parts: Callable) -> tuple[list[bool], list[str]]:
    """Run each part (``-> (cases, text)``); collect the cases and texts of those whose numbers exist."""
    cases, texts, missing = [], [], []
    for part in parts:
        try:
            c, t = part()
        except _Untested as err:
            missing.append(str(err))
            continue
        cases += c
        texts.append(t)
    if not cases:
        raise _Untested("; ".join(missing) or "no cases")
    return cases, texts + [f"({m})" for m in missing]


def _claim1(n: _Numbers) -> _Outcome:
    agree_bar, loss_bar = _kr_bars(n)

    def ch1():
        rows = [r for r in n.get("ch1", "mr", "per_seed") if float(r["lam"]) == 0]
        if not rows:
            raise _Untested("ch1 has no λ = 0 run")
        text = (f"ch1, λ = 0 ({len(rows)} seed(s)): the separately trained linearized model agrees with the "
                f"fine-tuned one on {', '.join(_pct(r['agree_own']) for r in rows)} of held-out labels; gap "
                f"‖f − f_lin‖/‖f‖ {', '.join(_g(r['rel_gap_eval']) for r in rows)}")
        return [float(r["agree_own"]) < agree_bar for r in rows], text

    def ch3():
        rows = [r for r in _kr_rows(n) if float(r["lam"]) == 0]
        if not rows:
            raise _Untested("ch3's kernel-regression study has no λ = 0 row")
        text = "ch3, λ = 0: kernel regression agrees on " + ", ".join(
            f"{_pct(r['agree_gd_vs_kr'])} ({r['task']})" for r in rows) + ", loss-curve error " + ", ".join(
            f"{_pct(r['loss_rel_error_mean'])} ({r['task']})" for r in rows)
        return [float(r["agree_gd_vs_kr"]) < agree_bar or float(r["loss_rel_error_mean"]) > loss_bar
                for r in rows], text

    cases, texts = _sources(ch1, ch3)
    texts.append(f"{sum(cases)} of {len(cases)} case(s) miss a bar (agreement ≥ {agree_bar:.0%}, loss error "
                 f"≤ {loss_bar:.0%})")
    return _Outcome(sum(cases), len(cases), "; ".join(texts))


def _claim2(n: _Numbers) -> _Outcome:
    trade = n.get("ch2", "tradeoff")
    bar = n.bar("ch2", "bar", GAP_RATIO_BAR, "tradeoff")
    lams = n.numbers.get("ch2", {}).get("sizes", {}).get("sweep_lambdas") or []
    span = f"λ = {min(lams):g} → {max(lams):g}" if lams else "smallest → largest λ"
    names = {"all": "anchor on every tensor", "lora": "anchor on LoRA only"}
    passed, total, texts = 0, 0, []
    for anchor, name in names.items():
        ratios = trade.get(f"gap_ratio_lam0_over_lammax_{anchor}")
        if not ratios:
            continue
        passed += sum(float(v[1]) >= bar for v in ratios.values())
        total += len(ratios)
        texts.append(f"{name}: " + ", ".join(f"{task} {_g(v[0])}× [{_g(v[1])}, {_g(v[2])}]"
                                             for task, v in ratios.items()))
    if not total:
        raise _Untested("ch2's trade-off sweep has no gap ratios (it needs two λ)")
    return _Outcome(passed, total, f"relative gap shrinks, {span}: " + "; ".join(texts)
                    + f"; bar: 95 % interval ≥ {bar:g}×, met in {passed} of {total}")


def _claim3(n: _Numbers) -> _Outcome:
    b = n.get("ch2", "bound")
    steps = int(n.get("ch2", "bound", "steps_checked"))
    if steps == 0:
        raise _Untested("ch2 checked no steps")
    failed = len(b.get("violation_rows", []))
    text = (f"{failed} of {steps} checked steps exceed a bound (gap > (L/2)·drift²: {b.get('violations_measured')}, "
            f"gap > L·R0/λ: {b.get('violations_anchored')}, drift > √(2R0/λ): {b.get('violations_drift')}); the "
            f"anchored objective rose at {b.get('objective_rises')} of {b.get('objective_steps_checked')} steps")
    return _Outcome(steps - failed, steps, text)


def _claim4(n: _Numbers) -> _Outcome:
    rows = _kr_rows(n)
    anchored = [r for r in rows if float(r["lam"]) > 0]
    if not anchored:
        raise _Untested("ch3's kernel-regression study has no anchored (λ > 0) row")
    passed = sum(float(r["kernel_change"]) <= KERNEL_CHANGE_BAR for r in anchored)
    text = "ch3, ‖K_T − K_0‖_F/‖K_0‖_F: " + ", ".join(
        f"{r['task']} λ = {float(r['lam']):g}: {_g(r['kernel_change'], 3)}" for r in rows)
    try:
        toy = {float(k): v for k, v in n.get("ch1", "toy", "kernel_change_by_lam").items()}
        width = n.numbers["ch1"]["toy"].get("width_fixed", "?")
        text += f"; for comparison the toy MLP (ch1, width {width}): " + ", ".join(
            f"λ = {lam:g}: {_g(v)}" for lam, v in sorted(toy.items()))
    except _Untested:
        pass
    return _Outcome(passed, len(anchored), text + f"; bar ≤ {KERNEL_CHANGE_BAR:.0%}, met in {passed} of "
                    f"{len(anchored)} anchored run(s)")


def _claim5(n: _Numbers) -> _Outcome:
    kr = n.get("ch3", "kernel_regression")
    rows = _kr_rows(n)
    agree_bar, loss_bar = _kr_bars(n)
    word = _WORDS.get(str(kr.get("verdict", "")).strip().lower())
    agree = [float(r["agree_gd_vs_kr"]) for r in rows]
    loss = [float(r["loss_rel_error_mean"]) for r in rows]
    agree_pass = sum(a >= agree_bar for a in agree)
    loss_pass = sum(x <= loss_bar for x in loss)
    text = (f"GD-trained and kernel-regression labels agree on {_pct(min(agree))}–{_pct(max(agree))} (bar "
            f"{agree_bar:.0%}, met in {agree_pass} of {len(rows)}); loss-curve error {_pct(min(loss))}–"
            f"{_pct(max(loss))} (bar {loss_bar:.0%}, met in {loss_pass} of {len(rows)}) over (task, λ) = "
            + ", ".join(f"({r['task']}, {float(r['lam']):g})" for r in rows))
    passed = sum(a >= agree_bar and x <= loss_bar for a, x in zip(agree, loss))
    return _Outcome(passed, len(rows), text, word)


def _claim6(n: _Numbers) -> _Outcome:
    rows = _kr_rows(n)
    _, loss_bar = _kr_bars(n)
    passed = sum(float(r["loss_rel_error_mean"]) <= loss_bar for r in rows)
    text = ("mean relative error of the predicted training-loss curve: " + ", ".join(
        f"{r['task']} λ = {float(r['lam']):g}: {_pct(r['loss_rel_error_mean'])}" for r in rows)
        + f"; bar ≤ {loss_bar:.0%}, met in {passed} of {len(rows)}")
    return _Outcome(passed, len(rows), text)


def _claim9(n: _Numbers) -> _Outcome:
    parts = {}
    for key in ("weyl_bounds", "layer_selection"):
        part = n.get("ch4", key)
        if not isinstance(part, dict) or "verdict" not in part:
            raise _Untested(f"ch4's {key} carries no verdict")
        parts[key] = {**part, "chapter": "ch4", "verdict": _normalize(part["verdict"], f"ch4, {key}")}
    words = {p["verdict"] for p in parts.values()}
    if "not yet tested" in words:
        raise _Untested("ch4 has tested only part of it: " + "; ".join(
            f"{key} {p['verdict']}" for key, p in parts.items()))
    word = words.pop() if len(words) == 1 else "partly"  # both parts must hold; neither holding is "does not hold"
    number = " ".join(str(p.get("evidence", "")) for p in parts.values())
    return _Outcome(0, 0, number, word, "; ".join(_entry_link(p) for p in parts.values()))


_KR = Section("ch3", "Is fine-tuning kernel regression?")
_ORDERINGS = ("no chapter has tested it yet: it needs κ at initialization beside fine-tuning results across tasks "
              "at one λ, which chapter 5 provides; chapter 3 measures κ only")

CLAIMS: tuple[Claim, ...] = (
    Claim(1, "unanchored-not-linear",
          "Without anchoring (λ = 0), fine-tuning is not well captured by its linearization.",
          "At λ = 0: held-out label agreement of the fine-tuned model with its separately trained linearization "
          "(ch1, per seed) and with kernel regression, plus the predicted loss curve (ch3, per task). A case supports "
          "the claim when it misses chapter 3's bars (agreement ≥ 90 %, loss-curve error ≤ 10 %).",
          (Section("ch1", "A language model: LoRA fine-tuning next to its linearization"), _KR), _claim1),
    Claim(2, "anchoring-linear",
          "Anchoring (the penalty λ/2‖θ − θ0‖²) keeps fine-tuning near its linearization.",
          "Chapter 2's trade-off sweep (cross-entropy, AdamW): the factor by which the relative gap "
          "‖f − f_lin‖/‖f‖ shrinks from the smallest to the largest λ, per task and anchor; it passes when the lower "
          "end of its 95 % interval reaches chapter 2's bar.",
          (Section("ch2", "What linearity costs: accuracy across tasks and λ"),), _claim2),
    Claim(3, "gap-bound",
          "The linearization gap of anchored training obeys ‖f − f_lin‖ ≤ (L/2)‖θ − θ0‖² ≤ L·R(θ0)/λ, with the "
          "drift ‖θ − θ0‖ ≤ √(2R(θ0)/λ).",
          "Chapter 2: every step of full-batch gradient descent (squared loss, anchor on every tensor, every seed and "
          "λ), L estimated from held-out directions; a step fails if a measured value exceeds its bound by more "
          "than the stated tolerance.",
          (Section("ch2", "Measured gap against the bound, every step"),), _claim3),
    Claim(4, "ntk-constant",
          "The NTK stays nearly constant during anchored fine-tuning.",
          f"Chapter 3's kernel-regression runs at λ > 0: the relative kernel change ‖K_T − K_0‖_F/‖K_0‖_F on the "
          f"training examples; it passes at ≤ {KERNEL_CHANGE_BAR:.0%} (a bar set on this page, where the chapters "
          "state none). The toy MLP of chapter 1 is shown for comparison, not counted.",
          (_KR, Section("ch1", "A small MLP: the kernel moves less as width and λ grow")), _claim4),
    Claim(5, "kernel-regression",
          "Fine-tuning behaves as kernel regression with the eNTK at initialization.",
          "Chapter 3: LoRA-only gradient descent (squared loss) against kernel regression with its initial eNTK, per "
          "task and λ: held-out label agreement ≥ 90 % and predicted loss-curve error ≤ 10 %, both required; the "
          "verdict is chapter 3's.",
          (_KR,), _claim5),
    Claim(6, "loss-curve",
          "The kernel's eigen-decomposition predicts the training-loss curve (empirical risk) before training.",
          "Chapter 3: mean relative error of the loss curve predicted from the initial eNTK's eigen-decomposition "
          "against the measured one, per task and λ; passes at ≤ 10 % (chapter 3's bar).",
          (_KR,), _claim6),
    Claim(7, "kappa-orders-mse",
          "Lower κ of the eNTK at initialization means lower training and eval loss and higher accuracy.",
          "Rank correlation across tasks (or configurations) between κ (κ_λ) and the loss and accuracy reached, for "
          "squared loss and gradient descent.",
          (Section("ch3", "How this compares with the reference study"),), None, _ORDERINGS),
    Claim(8, "kappa-orders-adamw",
          "The same ordering by κ holds for cross-entropy and AdamW.",
          "Chapter 5, the reference protocol: κ of the reference kernel on the first 32 training examples against "
          "held-out accuracy after fine-tuning LoRA + head with AdamW on a large sample; Spearman ρ of configuration "
          "means within task, pooled, with a bootstrap over configurations (holds: interval below 0; does not hold: "
          "above 0 or above −0.3; else not yet resolved).",
          (Section("ch3", "How this compares with the reference study"),), None, _ORDERINGS),
    Claim(9, "layer-selection",
          "Spectral layer selection: Weyl's inequalities bound the spectrum of a set of layers' kernel from "
          "per-layer spectra, and an advisor built on them picks the layers to adapt.",
          "Chapter 4: the exact spectra of layer unions against their Weyl bounds, and the advisor's choice against "
          "baselines in fine-tuning; the verdicts are chapter 4's (holds when both parts hold).",
          (Section("ch3", "Per-layer contributions"),), _claim9),
)
"""The claims in the reference study's order."""


def _by_key() -> dict[str, Claim]:
    keys = {}
    for c in CLAIMS:
        keys[str(c.id)] = keys[c.slug] = keys[f"claim{c.id}"] = c
    return keys


def _normalize(word, where: str) -> str:
    key = str(word).strip().lower()
    if key not in _WORDS:
        raise LinftError(f"{where}: unknown verdict {word!r}; use one of {VERDICTS}")
    return _WORDS[key]


def _read_all(scale: str, directory: Path) -> dict[str, dict]:
    numbers = {}
    for path in sorted(directory.glob(f"*-{scale}.json")):
        chapter = path.name[: -len(f"-{scale}.json")]
        if chapter in ("claims", "timings"):
            continue
        payload = load_results(path)
        if isinstance(payload, dict) and isinstance(payload.get("numbers"), dict):
            numbers[payload.get("chapter", chapter)] = payload["numbers"]
    return numbers


def chapter_claims(numbers: dict[str, dict]) -> dict[int, dict]:
    """The verdicts chapters wrote themselves: ``{claim id: entry + {"chapter"}}`` from each results' ``claims``.

    Raises :class:`linft.LinftError` for an unknown claim id or verdict, or for a claim judged by two chapters.
    """
    keys, found = _by_key(), {}
    for chapter, block in numbers.items():
        entries = block.get("claims") if isinstance(block, dict) else None
        for key, entry in (entries or {}).items():
            claim = keys.get(str(key).strip().lower())
            if claim is None:
                raise LinftError(f"{chapter}: unknown claim {key!r} in its 'claims'; use 1–{len(CLAIMS)} or a slug "
                                 f"of linft.claims.CLAIMS")
            if not isinstance(entry, dict) or "verdict" not in entry:
                raise LinftError(f"{chapter}: claim {key!r} needs a dict with 'verdict', 'evidence' and 'section'")
            if claim.id in found:
                raise LinftError(f"claim {claim.id} is judged by both {found[claim.id]['chapter']} and {chapter}")
            found[claim.id] = {**entry, "chapter": chapter,
                               "verdict": _normalize(entry["verdict"], f"{chapter}, claim {key!r}")}
    return found


def _entry_link(entry: dict) -> str:
    section, chapter = str(entry.get("section") or "").strip(), entry["chapter"]
    if not section:
        page = _page_of(chapter)
        return f"[{chapter}]({page}.html)" if page else ""
    if "#" in section:
        page, anchor = section.split("#", 1)
        page = re.sub(r"\.(md|ipynb|html)$", "", page.rsplit("/", 1)[-1]) or _page_of(chapter)
        return f"[{chapter} § {Section(chapter, anchor).title}]({page}.html#{anchor_id(anchor)})"
    return Section(chapter, section).markdown()


def claims_table(scale: str, directory: Path | str | None = None) -> pd.DataFrame:
    """One row per claim of :data:`CLAIMS` (index: its number), verdicts from the results at ``scale``.

    Columns: ``claim`` (in words), ``measurement`` (what tests it here), ``number`` (the numbers, or why it is
    untested), ``verdict`` (one of :data:`VERDICTS`), ``evidence link`` (Markdown links to the book's sections).
    ``directory``: where the results files are (default :func:`linft.results.results_dir`).
    """
    directory = Path(directory) if directory is not None else results_dir()
    raw = _read_all(scale, directory)
    numbers, judged = _Numbers(raw, scale), chapter_claims(raw)
    rows = []
    for claim in CLAIMS:
        links = "; ".join(s.markdown() for s in claim.sections)
        row = {"claim": claim.claim, "measurement": claim.measurement}
        if claim.id in judged:
            entry = judged[claim.id]
            row.update(measurement=entry.get("measurement", claim.measurement),
                       number=str(entry.get("number") or entry.get("evidence") or ""),
                       verdict=entry["verdict"], **{"evidence link": _entry_link(entry) or links})
        elif claim.assess is None:
            row.update(number=f"— ({claim.pending})", verdict="not yet tested", **{"evidence link": links})
        else:
            try:
                out = claim.assess(numbers)
                word = out.word or verdict(out.passed, out.total, some_word="partly")
                row.update(number=out.number, verdict=word, **{"evidence link": out.links or links})
            except _Untested as err:
                row.update(number=f"— ({err})", verdict="not yet tested", **{"evidence link": links})
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index([c.id for c in CLAIMS], name="#"))[COLUMNS]
    bad = set(table["verdict"]) - set(VERDICTS)
    if bad:
        raise LinftError(f"verdicts {sorted(bad)} are not among {VERDICTS}")
    return table


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict, in the order of :data:`VERDICTS` (zeros included)."""
    counts = table["verdict"].value_counts()
    return {word: int(counts.get(word, 0)) for word in VERDICTS}


def _cell(text: str) -> str:
    out, last = [], 0
    for match in _LINK.finditer(text):
        out.append(html.escape(text[last: match.start()]))
        out.append(f'<a href="{html.escape(match.group(2))}">{html.escape(match.group(1))}</a>')
        last = match.end()
    return "".join(out) + html.escape(text[last:])


def to_html(table: pd.DataFrame) -> str:
    """The table as an HTML ``<table>`` with clickable evidence links (for ``IPython.display.HTML``)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", *COLUMNS])
    body = []
    for number, row in table.iterrows():
        cells = [f"<td>{number}</td>"] + [
            f"<td><strong>{html.escape(row[c])}</strong></td>" if c == "verdict" else f"<td>{_cell(str(row[c]))}</td>"
            for c in COLUMNS]
        body.append(f'<tr class="verdict-{anchor_id(row["verdict"])}">{"".join(cells)}</tr>')
    return (f'<table class="dataframe claims-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            "</tbody></table>")


def summary_text(table: pd.DataFrame, scale: str) -> dict[str, str | int]:
    """Strings for :func:`linft.results.glue_all`: the scale, the number of claims, the count of each verdict
    (``n_holds``, ``n_partly``, ``n_does_not_hold``, ``n_not_yet_tested``) and the untested claims' numbers."""
    counts = verdict_counts(table)
    untested = [str(i) for i in table.index[table["verdict"] == "not yet tested"]]
    return {"claims_scale": scale, "n_claims": len(table),
            **{f"n_{anchor_id(word).replace('-', '_')}": n for word, n in counts.items()},
            "claims_untested": ", ".join(untested) if untested else "none"}
