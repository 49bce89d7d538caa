"""lm-evaluation-harness on the repository's own tasks (evaluation/tasks/): scores, offline, trustworthy."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

TASKS = ROOT / "evaluation" / "tasks"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A random-init tiny LLaMA saved like any Hub model, so the `hf` backend loads it by path."""
    from common import load_model, load_tokenizer
    folder = tmp_path_factory.mktemp("tiny-llama")
    load_model("tiny-llama").save_pretrained(folder)
    load_tokenizer("tiny-llama").save_pretrained(folder)
    return folder


def test_cli_scores_both_local_tasks_from_any_directory(tiny_folder, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={tiny_folder},dtype=float32", "--device", "cpu",
           "--include_path", str(TASKS), "--tasks", "rt_sentiment,python_qa_gen",
           "--num_fewshot", "1", "--limit", "3", "--batch_size", "4", "--output_path", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)  # generous: the CPU may be shared
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    mc, qa = results["results"]["rt_sentiment"], results["results"]["python_qa_gen"]
    assert 0.0 <= mc["acc,none"] <= 1.0 and mc["acc_stderr,none"] >= 0.0
    for key in ("exact_match,whole-line", "token_f1,whole-line", "exact_match,first-clause",
                "token_f1,first-clause"):
        assert 0.0 <= qa[key] <= 1.0, key
    assert results["n-samples"]["rt_sentiment"] == {"original": 1276, "effective": 3}
    assert results["n-samples"]["python_qa_gen"] == {"original": 50, "effective": 3}
    assert results["config"]["model_num_parameters"] > 0
    assert "rt_sentiment" in proc.stdout and "acc" in proc.stdout  # the printed table


def test_harness_loglikelihood_equals_a_plain_transformers_computation(smollm2):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = smollm2
    pairs = [("Review: a thrilling, funny ride.\nSentiment:", " positive"),
             ("Review: dull and far too long.\nSentiment:", " negative"),
             ("The capital of France is", " Paris, a city on the Seine")]
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=3, device="cpu")
    requests = [Instance("loglikelihood", doc={}, arguments=p, idx=0) for p in pairs]
    harness = lm.loglikelihood(requests, disable_tqdm=True)
    for (context, continuation), (logprob, greedy) in zip(pairs, harness, strict=True):
        ids = tokenizer(context + continuation, return_tensors="pt").input_ids
        n_context = len(tokenizer(context).input_ids)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, n_context:]
        rows = logprobs[n_context - 1:]
        assert logprob == pytest.approx(rows.gather(1, targets[:, None]).sum().item(), abs=1e-4)
        assert greedy == bool((rows.argmax(-1) == targets).all())


def test_token_f1_and_normalisation():
    spec = importlib.util.spec_from_file_location("harness_task_utils", TASKS / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    assert utils.normalize("The  *in-place* Answer.") == "inplace answer"
    assert utils.token_f1(["its second operand"], ["the second operand"]) == pytest.approx(0.8)  # P 1, R 2/3
    assert utils.token_f1(["-O"], ["-o"]) == 1.0  # case and punctuation are ignored, like SQuAD
    assert utils.token_f1(["compile()"], ["eval"]) == 0.0
