"""linft.claims: every verdict path on synthetic results files, missing files and keys, chapter-provided verdicts,
the evidence links (anchors as Sphinx makes them, headings that exist), and the real smoke results when present."""

import json
import re
from pathlib import Path

import pytest

from linft import LinftError, claims
from linft.claims import CLAIMS, VERDICTS, claims_table, verdict_counts

ROOT = Path(__file__).resolve().parents[1]


def _write(directory: Path, chapter: str, numbers: dict, scale: str = "smoke") -> None:
    payload = {"chapter": chapter, "scale": scale, "numbers": numbers, "meta": {}}
    (directory / f"{chapter}-{scale}.json").write_text(json.dumps(payload))


def _kr_row(task="mr", lam=0.0, agree=0.95, loss=0.05, kchange=0.05):
    return {"task": task, "lam": lam, "agree_gd_vs_kr": agree, "loss_rel_error_mean": loss, "kernel_change": kchange}


def _ch3(rows, verdict="holds"):
    return {"kernel_regression": {"rows": rows, "agreement_bar": 0.9, "loss_error_bar": 0.1, "verdict": verdict}}


def _ch1(agree0=0.5):
    return {"mr": {"per_seed": [{"seed": 0, "lam": 0.0, "agree_own": agree0, "rel_gap_eval": 0.2},
                                {"seed": 0, "lam": 50.0, "agree_own": 1.0, "rel_gap_eval": 0.01}]},
            "toy": {"kernel_change_by_lam": {"0.0": 0.1, "5.0": 0.002}, "width_fixed": 64}}


def _ch2(lows=(6.0, 7.0), violations=0, steps=16):
    ratios = {task: [low * 1.5, low, low * 3] for task, low in zip(("mr", "subj"), lows)}
    return {"tradeoff": {"bar": 5.0, "gap_ratio_lam0_over_lammax_all": ratios},
            "sizes": {"sweep_lambdas": [0.0, 50.0]},
            "bound": {"steps_checked": steps, "violation_rows": [{"step": i} for i in range(violations)],
                      "violations_measured": violations, "violations_anchored": 0, "violations_drift": 0,
                      "objective_rises": 0, "objective_steps_checked": steps}}


def test_no_results_means_not_yet_tested_with_the_reason(tmp_path):
    table = claims_table("smoke", tmp_path / "nowhere")
    assert list(table.columns) == ["claim", "measurement", "number", "verdict", "evidence link"]
    assert list(table.index) == [c.id for c in CLAIMS] == list(range(1, 10))
    assert set(table["verdict"]) == {"not yet tested"}
    assert "ch2-smoke.json not found" in table.loc[3, "number"] and "run chapter ch2-anchored-bound" in \
        table.loc[3, "number"]
    assert verdict_counts(table) == {"holds": 0, "partly": 0, "does not hold": 0, "not yet tested": 9}


def test_every_verdict_is_computed_from_the_numbers(tmp_path):
    _write(tmp_path, "ch1", _ch1(agree0=0.5))  # the λ = 0 linearization misses the agreement bar: claim 1 supported
    _write(tmp_path, "ch2", _ch2(lows=(6.0, 2.0), violations=0))  # one task of two meets the gap bar
    _write(tmp_path, "ch3", _ch3([_kr_row(lam=0.0, agree=0.95, loss=0.05, kchange=0.5),
                                  _kr_row(lam=0.5, agree=0.6, loss=0.3, kchange=0.4)], verdict="holds only in part"))
    table = claims_table("smoke", tmp_path)
    got = table["verdict"].to_dict()
    # claim 1: ch1 seed misses the bar (supports), ch3 λ = 0 row meets both (does not) → partly
    assert got[1] == "partly" and "1 of 2 case(s) miss a bar" in table.loc[1, "number"]
    assert got[2] == "partly" and "met in 1 of 2" in table.loc[2, "number"]
    assert got[3] == "holds" and "0 of 16 checked steps" in table.loc[3, "number"]
    assert got[4] == "does not hold" and "0.4" in table.loc[4, "number"] and "toy MLP" in table.loc[4, "number"]
    assert got[5] == "partly"  # chapter 3's own verdict, normalized
    assert got[6] == "partly" and "met in 1 of 2" in table.loc[6, "number"]
    assert got[7] == got[8] == got[9] == "not yet tested"
    assert "ch4-smoke.json not found" in table.loc[9, "number"]
    assert verdict_counts(table) == {"holds": 1, "partly": 4, "does not hold": 1, "not yet tested": 3}


def test_holds_and_does_not_hold(tmp_path):
    _write(tmp_path, "ch1", _ch1(agree0=0.99))
    _write(tmp_path, "ch2", _ch2(lows=(6.0, 8.0), violations=16))
    _write(tmp_path, "ch3", _ch3([_kr_row(lam=0.0), _kr_row(lam=0.5, kchange=0.01)], verdict="holds"))
    got = claims_table("smoke", tmp_path)["verdict"].to_dict()
    assert got[1] == "does not hold"  # linearization captured the unanchored run in every case
    assert got[2] == "holds" and got[3] == "does not hold"
    assert got[4] == got[5] == got[6] == "holds"


def test_missing_chapter_or_key_names_what_is_missing(tmp_path):
    _write(tmp_path, "ch2", {"sizes": {}})  # no bound, no trade-off
    _write(tmp_path, "ch3", _ch3([_kr_row(lam=0.0, agree=0.5)]))  # no anchored row
    table = claims_table("smoke", tmp_path)
    assert table.loc[2, "verdict"] == table.loc[3, "verdict"] == table.loc[4, "verdict"] == "not yet tested"
    assert "ch2's results have no tradeoff" in table.loc[2, "number"]
    assert "no anchored (λ > 0) row" in table.loc[4, "number"]
    # claim 1 uses what exists: ch3's λ = 0 row (misses the bar), and says ch1 is missing
    assert table.loc[1, "verdict"] == "holds" and "ch1-smoke.json not found" in table.loc[1, "number"]
    # another scale's files are not read
    assert set(claims_table("default", tmp_path)["verdict"]) == {"not yet tested"}


def test_chapter_verdict_overrides_the_mapping(tmp_path):
    _write(tmp_path, "ch2", {**_ch2(violations=0), "claims": {
        "gap-bound": {"verdict": "does not hold", "evidence": "chapter's own count", "section": "The statement"}}})
    _write(tmp_path, "ch4", {"weyl_bounds": {}, "claims": {
        "9": {"verdict": "Holds", "evidence": "bounds contain every exact eigenvalue",
              "section": "ch4-layer-selection#Weyl bounds, checked"}}})
    table = claims_table("smoke", tmp_path)
    assert table.loc[3, "verdict"] == "does not hold" and table.loc[3, "number"] == "chapter's own count"
    assert "(ch2-anchored-bound.html#the-statement)" in table.loc[3, "evidence link"]
    assert table.loc[9, "verdict"] == "holds"
    assert table.loc[9, "evidence link"] == "[ch4 § Weyl bounds, checked](ch4-layer-selection.html#weyl-bounds-checked)"


def test_chapter_results_without_a_verdict_stay_untested(tmp_path):
    _write(tmp_path, "ch4", {"weyl_bounds": {"violations": 0}, "layer_selection": {}})
    row = claims_table("smoke", tmp_path).loc[9]
    assert row["verdict"] == "not yet tested" and "ch4's weyl_bounds carries no verdict" in row["number"]


@pytest.mark.parametrize("weyl, selection, expected", [
    ("holds", "holds", "holds"), ("holds", "does not hold", "partly"), ("partly", "partly", "partly"),
    ("does not hold", "does not hold", "does not hold"), ("holds", "not yet tested", "not yet tested"),
])
def test_claim9_from_chapter4_parts(tmp_path, weyl, selection, expected):
    _write(tmp_path, "ch4", {"weyl_bounds": {"verdict": weyl, "evidence": "W.", "section": "Weyl bounds"},
                             "layer_selection": {"verdict": selection, "evidence": "S.", "section": "sec-advisor"}})
    row = claims_table("smoke", tmp_path).loc[9]
    assert row["verdict"] == expected
    if expected != "not yet tested":
        assert row["number"] == "W. S."
        page = claims._page_of("ch4")  # ch4-layer-selection, or the name _toc.yml gives chapter 4
        assert row["evidence link"] == (f"[ch4 § Weyl bounds]({page}.html#weyl-bounds); "
                                        f"[ch4 § advisor]({page}.html#sec-advisor)")


@pytest.mark.parametrize("entry, match", [
    ({"12": {"verdict": "holds"}}, "unknown claim"),
    ({"9": {"verdict": "mostly"}}, "unknown verdict"),
    ({"9": "holds"}, "needs a dict"),
])
def test_bad_chapter_entries_fail_loudly(tmp_path, entry, match):
    _write(tmp_path, "ch4", {"claims": entry})
    with pytest.raises(LinftError, match=match):
        claims_table("smoke", tmp_path)


def test_a_claim_judged_twice_fails(tmp_path):
    _write(tmp_path, "ch4", {"claims": {"9": {"verdict": "holds"}}})
    _write(tmp_path, "ch5", {"claims": {"layer-selection": {"verdict": "partly"}}})
    with pytest.raises(LinftError, match="judged by both"):
        claims_table("smoke", tmp_path)


def test_anchor_ids_match_sphinx():
    nodes = pytest.importorskip("docutils.nodes")
    headings = [s.heading for c in CLAIMS for s in c.sections] + ["κ_λ: the condition number", "3 Weyl's bounds!",
                                                                    "my_label", "Ünïcode — dashes"]
    for heading in headings:
        assert claims.anchor_id(heading) == nodes.make_id(heading), heading


def test_evidence_sections_exist_in_the_chapters():
    for claim in CLAIMS:
        for section in claim.sections:
            source = ROOT / "notebooks" / f"{section.page}.md"
            text = source.read_text()
            assert re.search(rf"^#+ {re.escape(section.heading)}\s*$", text, re.M) or \
                f"({section.heading})=" in text, f"claim {claim.id}: no section {section.heading!r} in {source.name}"


def test_html_has_links_and_escapes(tmp_path):
    table = claims_table("smoke", tmp_path)
    table.loc[1, "number"] = "a < b & [x](page.html#y)"
    out = claims.to_html(table)
    assert out.startswith("<table") and out.count("<tr") == 10
    assert "a &lt; b &amp; " in out and '<a href="page.html#y">x</a>' in out
    assert '<a href="ch2-anchored-bound.html#measured-gap-against-the-bound-every-step">' in out
    text = claims.summary_text(table, "smoke")
    assert text["n_not_yet_tested"] == 9 and text["claims_untested"].startswith("1, 2")


def test_fallback_bars_equal_the_chapters():
    from linft.experiments import anchoring, kernel_regression

    assert claims.AGREEMENT_BAR == kernel_regression.AGREEMENT_BAR
    assert claims.LOSS_ERROR_BAR == kernel_regression.LOSS_ERROR_BAR
    assert claims.GAP_RATIO_BAR == anchoring.GAP_RATIO_BAR


@pytest.mark.parametrize("scale", ["smoke", "default"])
def test_real_results(scale):
    directory = ROOT / "_build" / "results"
    if not (directory / f"ch1-{scale}.json").exists():
        pytest.skip(f"no {scale} results in {directory}")
    table = claims_table(scale, directory)
    assert len(table) == len(CLAIMS) and set(table["verdict"]) <= set(VERDICTS)
    for number in (1, 2, 3, 4, 5, 6):  # what chapters 1–3 measure
        assert table.loc[number, "verdict"] != "not yet tested", table.loc[number, "number"]
    assert all("](" in link for link in table["evidence link"])


def test_check_results_flags_a_stale_or_broken_claims_file(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from check_results import claims_problems

    from linft.results import write_results

    _write(tmp_path, "ch2", _ch2(violations=0))
    table = claims_table("smoke", tmp_path)
    write_results("claims", "smoke", {"rows": table.reset_index().to_dict("records"),
                                      "counts": verdict_counts(table)}, directory=tmp_path)
    html_problems = [p for p in claims_problems(tmp_path, "smoke") if "claims.html" in p]
    assert claims_problems(tmp_path, "smoke") == html_problems  # JSON side clean; HTML side is the real build's
    _write(tmp_path, "ch2", _ch2(violations=3))  # the chapter re-ran after the claims page
    assert any("stale for claims [3]" in p for p in claims_problems(tmp_path, "smoke"))
    payload = json.loads((tmp_path / "claims-smoke.json").read_text())
    payload["numbers"]["rows"][0]["verdict"] = "mostly"
    (tmp_path / "claims-smoke.json").write_text(json.dumps(payload))
    problems = claims_problems(tmp_path, "smoke")
    assert any("'mostly'" in p for p in problems) and any("counts" in p for p in problems)


def test_api_page_covers_the_public_modules():
    """book/api.md documents every module linft's docstring lists as public, and only modules that import."""
    import importlib

    import linft

    page = (ROOT / "book" / "api.md").read_text()
    listed = set(re.findall(r":mod:`(linft(?:\.\w+)*)`", linft.__doc__))
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$", page, re.M))
    assert listed <= documented, f"public modules missing from book/api.md: {sorted(listed - documented)}"
    for name in documented:
        importlib.import_module(name)


def test_check_results_wants_chapter5s_verdicts_reruns_and_anchored_slice():
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from check_results import chapter5_problems

    good = {"claims": {c: {"verdict": "does not hold", "evidence": "ρ = 0.3", "section": "ch5-verdict"}
                       for c in ("kappa-orders-mse", "kappa-orders-adamw")},
            "rerun": [{"task": "mr", "config": "qv-r8", "match": True}],
            "anchored": {"lam": 0.5, "counts": {"rows": 108},
                         "verdicts": {"ce_adamw": {"verdict": "not yet tested", "evidence": "only 0 of 54 moved"}}},
            "counts": {"rows": 10, "used": 8, "failed": 1, "not_moved": 1},
            "reference": {"primary": {**{t: {"rho": 0.2, "low": -0.1, "high": 0.5, "verdict": "not resolved",
                                             "n_configs": 12} for t in ("mr", "pooled")},
                                      "subj": {"rho": float("nan"), "low": float("nan"), "high": float("nan"),
                                               "verdict": "not tested", "n_configs": 2}},  # the sweep just got there
                          "counts": {"tasks": ["mr", "subj"], "calib": [32]},
                          "rho_n": [{"kernel": k, "n": 32, "kernel_seconds": 1.5} for k in ("ref", "trained")]}}
    assert chapter5_problems(good, Path("ch5.json")) == []
    nan_rho = {**good["reference"], "primary": {**good["reference"]["primary"],
                                                "mr": {**good["reference"]["primary"]["mr"], "rho": float("nan")}}}
    assert "reference.primary['mr']" in chapter5_problems({**good, "reference": nan_rho}, Path("ch5.json"))[0]
    untested = {**good["reference"], "primary": {**good["reference"]["primary"],
                                                 "mr": {**good["reference"]["primary"]["mr"], "verdict": "not tested"}}}
    assert "reference.primary['mr']" in chapter5_problems({**good, "reference": untested}, Path("ch5.json"))[0]
    for key, bad, says in [("anchored", {}, "'anchored'"), ("anchored", {**good["anchored"], "lam": 0}, "'anchored'"),
                           ("rerun", [{"match": False}], "re-run"),
                           ("counts", {"rows": 10, "used": 8, "failed": 0, "not_moved": 1}, "'counts'")]:
        problems = chapter5_problems({**good, key: bad}, Path("ch5.json"))
        assert len(problems) == 1 and says in problems[0], (key, problems)
