"""linft.results and linft.scales: headline numbers round-trip; profiles and overrides."""

import json
import math

import numpy as np
import pytest
import torch

from linft import LinftError
from linft.results import read_results, write_results
from linft.scales import PROFILES, get_scale


def test_results_round_trip(tmp_path):
    numbers = {"kappa": {"mr": torch.tensor(12.5), "subj": np.float64(3.0)}, "bad": math.inf, "ev": torch.arange(3)}
    path = write_results("ch9", "smoke", numbers, directory=tmp_path)
    assert path.name == "ch9-smoke.json"
    payload = json.loads(path.read_text())
    assert payload["meta"]["torch"] == torch.__version__
    assert payload["numbers"]["bad"] is None  # non-finite numbers are JSON null, as in the CLI's --json
    back = read_results("ch9", "smoke", directory=tmp_path)
    assert math.isnan(back.pop("bad"))  # null reads back as NaN
    assert back == {"kappa": {"mr": 12.5, "subj": 3.0}, "ev": [0, 1, 2]}


def test_non_finite_numbers_one_way(tmp_path):
    from linft.cli import _json
    from linft.results import dumps, json_safe, load_results

    values = {"inf": math.inf, "ninf": -math.inf, "nan": float("nan"), "np": np.float32("inf"), "t": torch.tensor(1.5),
              "list": [1.0, math.nan], "ok": 2}
    safe = {"inf": None, "ninf": None, "nan": None, "np": None, "t": 1.5, "list": [1.0, None], "ok": 2}
    assert json_safe(values) == safe
    assert json.loads(dumps(values)) == safe
    assert json.loads(_json(values)) == safe  # the CLI writes through the same function
    assert "Infinity" not in dumps(values) and "NaN" not in dumps(values)
    legacy = tmp_path / "old.json"  # files written before null: "inf"/"-inf"/"nan" strings read as those floats
    legacy.write_text(json.dumps({"numbers": {"a": "inf", "b": "-inf", "c": "nan", "d": None, "e": "text"}}))
    back = load_results(legacy)["numbers"]
    assert back["a"] == math.inf and back["b"] == -math.inf and math.isnan(back["c"]) and math.isnan(back["d"])
    assert back["e"] == "text"


def test_results_errors(tmp_path):
    with pytest.raises(LinftError, match="no headline numbers"):
        write_results("ch9", "smoke", {}, directory=tmp_path)
    with pytest.raises(LinftError, match="run chapter"):
        read_results("ch8", "smoke", directory=tmp_path)


def test_scales():
    assert set(PROFILES) == {"smoke", "default", "paper"}
    smoke, default = get_scale("smoke"), get_scale("default")
    assert smoke.n_train < default.n_train and smoke.ntk_n < default.ntk_n
    assert get_scale("paper").model == "roberta-base"
    assert get_scale("default", model="smollm2").model == "smollm2"
    with pytest.raises(LinftError, match="unknown scale"):
        get_scale("huge")
    with pytest.raises(LinftError, match="unknown scale field"):
        get_scale("smoke", n_trian=3)
