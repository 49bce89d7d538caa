"""The two README commands: set-up is idempotent and offline; JupyterLab serves the lessons."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from tests.conftest import ROOT


def test_second_setup_downloads_nothing_and_is_quick():
    packages = ROOT / ".cache" / "packages"
    before = sorted(p.name for p in packages.iterdir())
    start = time.perf_counter()
    out = subprocess.run(["bash", "tools/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert "installing" not in out.stdout and "Converting" not in out.stdout
    assert sorted(p.name for p in packages.iterdir()) == before
    assert elapsed < 60, f"a second set-up took {elapsed:.0f} s"  # ~8 s measured on 2 cores


def test_makefile_has_the_documented_entry_points():
    out = subprocess.run(["make", "-n", "lab", "tour", "test"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "jupyterlab" in out.stdout and "tour.py" in out.stdout and "pytest" in out.stdout
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyterlab_serves_the_first_lesson(tmp_path):
    port, token = _free_port(), "test-token"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/contents/pretrained/01_pipelines_tokenizers_chat.ipynb?token={token}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    body = json.loads(resp.read())
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("JupyterLab did not answer within 60 s")
        assert body["type"] == "notebook" and body["content"]["cells"][0]["cell_type"] == "markdown"
    finally:
        server.terminate()
        server.wait(timeout=30)
