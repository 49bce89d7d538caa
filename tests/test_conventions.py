"""Lesson conventions: notebook structure, committed outputs, section READMEs, script --help."""

import json
import re
import subprocess
import sys
import tomllib

import nbformat
import pytest

from tests.conftest import ROOT, SECTIONS, notebooks, scripts

SKIPS = tomllib.loads((ROOT / "tests" / "notebook_skips.toml").read_text())
SKIPPED_IN_CI = {rel for rel, entry in SKIPS.items() if "requires" not in entry}  # never run in CI
MACHINE_PATHS = re.compile(r"(/tmp/|/root/|/home/|/work/|/Users/|site-packages|\.venv/)")
nb_ids = lambda p: p.relative_to(ROOT).as_posix()  # noqa: E731


@pytest.mark.parametrize("path", notebooks(), ids=nb_ids)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name"), "no kernelspec metadata"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "no markdown title"
    first = nb.cells[0].source
    for part in ("What you will learn", "What it needs"):
        assert part in first, f"title cell lacks '{part}'"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("parameters" in c.metadata.get("tags", []) for c in code[:3]), "no parameters cell"
    assert all(len(c.source.splitlines()) <= 30 for c in code), "a code cell over 30 lines"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Summary" in markdown and "## Try next" in markdown


@pytest.mark.parametrize("path", notebooks(), ids=nb_ids)
def test_notebook_committed_with_a_clean_default_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert None not in counts and counts == sorted(counts), "not executed in order from the top"
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"error output: {out.get('ename')}"
            text = json.dumps(out)
            assert not MACHINE_PATHS.search(text), f"machine path in output: {MACHINE_PATHS.search(text)[0]}"
    run = nb.metadata.get("llm_path", {})
    assert "default_run" in run, "record outputs with: make notebooks NB=<path>"
    assert "ci_run" in run or path.relative_to(ROOT).as_posix() in SKIPPED_IN_CI, "no CI run recorded"
    assert run["default_run"]["seconds"] <= 300, "a lesson must run within 5 minutes at its defaults"


@pytest.mark.parametrize("section", SECTIONS)
def test_section_readme_lists_its_lessons_and_scripts(section):
    readme = ROOT / section / "README.md"
    assert readme.exists(), f"{section}/README.md is missing"
    text = readme.read_text()
    for path in notebooks() + scripts():
        if path.parent.name == section:
            assert path.name in text, f"{path.name} is not listed in {section}/README.md"


def test_readme_tables_are_up_to_date():
    out = subprocess.run([sys.executable, "-m", "tools.readme_tables", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("script", scripts(), ids=nb_ids)
def test_script_help_has_examples(script):
    out = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Examples:" in out.stdout and "usage:" in out.stdout
