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
    back = read_results("ch9", "smoke", directory=tmp_path)
    assert back == {"kappa": {"mr": 12.5, "subj": 3.0}, "bad": "inf", "ev": [0, 1, 2]}


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
