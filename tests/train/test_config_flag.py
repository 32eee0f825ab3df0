"""``python -m train --config``: the published-size configs and JSON overrides (issue 11)."""

from __future__ import annotations

import json

import pytest

from core.cli import run_cli
from core.errors import ConfigError, UserError
from models.registry import default_config, published_config
from train.__main__ import PROG, _config_arg, main


@pytest.mark.parametrize("model", ["slssnn", "sma_net", "cml_net", "cml_spikformer"])
def test_published_config_fits_the_dataset(model):
    fitted = default_config(model, (8, 8), 10)
    pub = published_config(model, (8, 8), 10)
    # the paper's sizes, the dataset's input and classes
    assert pub["in_shape"] == fitted["in_shape"] and pub["n_out"] == 10
    assert pub != fitted
    assert _config_arg("published", model, "digits") == pub


def test_a_model_without_a_published_config_is_refused_by_name():
    with pytest.raises(ConfigError, match="fc_snn.*no published config.*slssnn"):
        published_config("fc_snn", (8, 8), 10)


def test_json_inline_and_file(tmp_path):
    assert _config_arg('{"n_hidden": 32}', "fc_snn", "digits") == {"n_hidden": 32}
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"n_hidden": 16}))
    assert _config_arg(str(f), "fc_snn", "digits") == {"n_hidden": 16}
    with pytest.raises(UserError, match="not valid JSON"):
        _config_arg("{n_hidden: 3}", "fc_snn", "digits")
    with pytest.raises(UserError, match="JSON object"):
        f.write_text("[1, 2]")
        _config_arg(str(f), "fc_snn", "digits")
    with pytest.raises(UserError, match="not 'published'"):
        _config_arg(str(tmp_path / "missing.json"), "fc_snn", "digits")


def test_cli_refuses_an_unknown_constructor_argument_in_one_line(tmp_path, capsys):
    argv = ["--model", "fc_snn", "--dataset", "digits", "--epochs", "1",
            "--config", '{"no_such_argument": 1}', "-o", str(tmp_path / "c.pt")]
    rc = run_cli(PROG, main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no_such_argument" in err[0], err
    assert not (tmp_path / "c.pt").exists()
