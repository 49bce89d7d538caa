"""fine-tuning/distributed.py: a 2-process run under torchrun (DDP) and tensor parallelism give the 1-process
result, bad launches fail in words, and the config files load (tiny-llama, 3 short steps)."""

import json
import sys
from functools import partial

import pytest

from tests.conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "fine-tuning"))
import distributed  # noqa: E402

SCRIPT = ROOT / "fine-tuning" / "distributed.py"
SMALL = ["--steps", "3", "--batch", "4", "--seq-len", "32", "--lr", "1e-3"]
TOLERANCE = 2e-4  # a fifth of the learning rate (see params_off for why not 1e-6)


_run = partial(run_script, SCRIPT, timeout=180)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    result = distributed.launch("single", tmp_path_factory.mktemp("single"), args=SMALL, timeout=300)
    assert result["returncode"] == 0, result["stderr"][-2000:]
    return result


def _check_two_processes(result):
    assert result["returncode"] == 0, result["stderr"][-2000:]
    ranks = result["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    assert len({r["pid"] for r in ranks}) == 2, "the two ranks must be two processes"
    assert ranks[0]["losses"] == ranks[1]["losses"]


def _check_same_params(a, b):
    assert distributed.max_param_diff(a["output"], b["output"]) < TOLERANCE
    off, total = distributed.params_off(a["output"], b["output"], atol=1e-5)
    assert off <= total * 1e-5, f"{off} of {total} parameters differ"


def test_ddp_under_torchrun_uses_two_processes_and_matches_one(single, tmp_path):
    ddp = distributed.launch("ddp", tmp_path / "ddp", nproc=2, args=SMALL, timeout=300)
    _check_two_processes(ddp)
    assert ddp["ranks"][0]["rows_per_rank"] == 2 and ddp["ranks"][0]["backend"] == "gloo"
    losses = single["ranks"][0]["losses"]
    assert losses[-1] < losses[0], "training must lower the loss"
    assert ddp["ranks"][0]["losses"] == pytest.approx(losses, abs=1e-4)
    _check_same_params(single, ddp)
    # the comparison can fail: a run from other initial weights is far away
    other = distributed.launch("single", tmp_path / "seed1", args=[*SMALL, "--seed", "1"], timeout=300)
    assert distributed.max_param_diff(single["output"], other["output"]) > 1e-2


def test_tensor_parallel_mlp_equals_the_whole_mlp_and_training_matches(single, tmp_path):
    tp = distributed.launch("tp", tmp_path / "tp", nproc=2, args=SMALL, timeout=300)
    _check_two_processes(tp)
    for rank in tp["ranks"]:
        check = rank["tp_check"]
        assert check["output_scale"] > 1e-3  # a real output, not zeros
        assert max(check["output_diff"], check["input_grad_diff"], check["weight_grad_diff"]) < 1e-5
    whole = single["ranks"][0]["params_per_rank"]
    assert tp["ranks"][0]["params_per_rank"] < whole  # each rank holds half of every MLP
    _check_same_params(single, tp)


def test_a_distributed_mode_without_a_launcher_is_refused_in_words(tmp_path):
    out = _run("--mode", "ddp", "--output", tmp_path, *SMALL)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "needs 2 or more processes" in out.stderr and "torchrun" in out.stderr
    assert not list(tmp_path.glob("rank*.json"))


def test_accelerate_cpu_flag_starts_one_process_and_is_caught(tmp_path):
    trap = distributed.launch("accelerate", tmp_path, nproc=2, launcher="accelerate-cpu", args=SMALL, timeout=300)
    assert trap["returncode"] != 0 and not trap["ranks"]
    assert "this run has 1" in trap["stderr"] and "--multi_gpu" in trap["stderr"]


def test_bad_data_and_compare_errors(tmp_path):
    out = _run("--data", tmp_path / "missing.txt", "--output", tmp_path, *SMALL)
    assert out.returncode == 2 and "neither a named corpus" in out.stderr and "Traceback" not in out.stderr
    out = _run("--compare", tmp_path / "a", tmp_path / "b")
    assert out.returncode == 2 and "no params.pt" in out.stderr


def test_config_files_load_and_every_auto_is_filled():
    from accelerate.commands.config.config_args import load_config_from_file

    for path in sorted((ROOT / "fine-tuning" / "configs").glob("accelerate_*.yaml")):
        config = load_config_from_file(str(path))
        assert config.num_processes >= 8, path.name
    for stage in (2, 3):
        raw = (ROOT / "fine-tuning" / "configs" / f"ds_zero{stage}.json").read_text()
        assert '"auto"' in raw
        filled = distributed.deepspeed_config(stage, lr=1e-3, batch=8, world=2, hidden=128)
        assert '"auto"' not in json.dumps(filled)
        assert filled["zero_optimization"]["stage"] == stage and filled["train_micro_batch_size_per_gpu"] == 4
    with pytest.raises(distributed.UsageError, match="cannot fill"):
        distributed.fill_auto({"zero_optimization": {"sub_group_size": "auto"}}, {})
