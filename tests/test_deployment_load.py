"""deployment/load_test.py and deployment/vllm_offline.py: clear errors, input parsing, the plot; the full
load test against a live server runs in deployment/05 (tests/test_notebooks.py)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "deployment"))
import load_test  # noqa: E402
import vllm_offline  # noqa: E402


def test_servers_that_are_not_installed_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_gguf.py"):
        load_test.start("llamacpp", gguf=None)
    with pytest.raises(FileNotFoundError, match="setup_vllm.sh"):
        load_test.start("vllm", vllm_python=tmp_path / "no-python")
    with pytest.raises(ValueError, match="unknown server"):
        load_test.start("tgi")
    running = load_test.start("url", base_url="http://127.0.0.1:1/v1", served_name="m")
    assert running.process is None and running.served_name == "m"
    running.stop()  # nothing to stop, no error


def test_a_server_that_dies_at_start_is_reported_with_its_output(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no module named vllm (fake)'\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"exited \(code 3\)[\s\S]*no module named vllm"):
        load_test.start("vllm", vllm_python=fake, timeout=30)


@pytest.mark.parametrize("argv, message", [(["--servers", "url"], "needs --base-url"),
                                           (["--servers", "llamacpp"], "needs --gguf"),
                                           (["--concurrency", "0"], "at least 1")])
def test_cli_refuses_incomplete_arguments(argv, message):
    run = subprocess.run([sys.executable, str(ROOT / "deployment" / "load_test.py"), *argv],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr


def test_plot_draws_one_throughput_line_per_server():
    rows = [{"server": s, "concurrency": c, "tokens_per_s": t, "ttft_p50": 0.1 * c, "ttft_p95": 0.2 * c}
            for s, base in (("project", 20), ("vllm", 30)) for c, t in ((1, base), (4, 3 * base))]
    fig = load_test.plot(rows)
    throughput, ttft = fig.axes
    assert [line.get_label() for line in throughput.get_lines()] == ["project", "vllm"]
    assert list(throughput.get_lines()[1].get_ydata()) == [30, 90]
    assert len(ttft.get_lines()) == 4  # p50 and p95 per server


def test_vllm_prompt_lines_are_checked_line_by_line():
    rows = vllm_offline.read_prompts(['{"ids": [1, 2]}', "", '{"text": "hi"}',
                                      '{"messages": [{"role": "user", "content": "x"}]}'])
    assert [list(r) for r in rows] == [["ids"], ["text"], ["messages"]]
    with pytest.raises(ValueError, match="line 2: not JSON"):
        vllm_offline.read_prompts(['{"ids": [1]}', "{oops"])
    with pytest.raises(ValueError, match="line 1: give exactly one of"):
        vllm_offline.read_prompts(['{"ids": [1], "text": "both"}'])
    with pytest.raises(ValueError, match="no prompts"):
        vllm_offline.read_prompts(["", "  "])
