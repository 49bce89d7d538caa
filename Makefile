# The learning path's entry points. Each target sets itself up first (idempotent, offline).
#   make lab      open the lessons in JupyterLab
#   make tour     walk the sections from the terminal (< 5 minutes)
#   make test     run the tests exactly as CI does (executes every notebook and script)
PY := .venv/bin/python
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lab tour test lint notebooks readme clean
setup:
	@bash tools/setup.sh

lab: setup
	$(PY) -m jupyterlab --ServerApp.root_dir=. $(if $(filter 0,$(shell id -u)),--allow-root) README.md

tour: setup
	$(PY) tour.py

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest --basetemp=build/pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .

# Re-execute notebooks at their defaults, save the outputs, then refresh the README tables.
#   make notebooks NB="pretrained/01_pipelines_tokenizers_chat.ipynb"
notebooks: setup
	$(PY) -m tools.nbrun --record $(or $(NB),$(wildcard */[0-9][0-9]_*.ipynb))
	$(PY) -m tools.readme_tables

readme: setup
	$(PY) -m tools.readme_tables

clean:
	rm -rf .venv build
