"""linft.finding: the shipped summary of the keystone study is the one its committed CSV gives."""

import json
import runpy
from pathlib import Path

from linft.finding import finding_text, load_finding

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_finding_is_recomputed_from_the_committed_csv():
    script = runpy.run_path(str(ROOT / "scripts" / "update_finding.py"))
    recomputed = json.loads(json.dumps(script["compute"]()))
    assert load_finding() == recomputed, "run scripts/update_finding.py after committing new study rows"


def test_finding_text_names_the_scope_and_the_numbers():
    finding = load_finding()
    text = finding_text(finding)
    assert finding["scope"]["model"] in text and f"{finding['scope']['runs']} runs" in text
    assert finding["verdict"] in text
    assert "not shipped" in finding_text(None)
