# `make demo` and `make test` set up their own virtual environment (.venv) first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CNNCLI := $(VENV)/bin/cnncli
STAMP  := $(VENV)/.installed

.PHONY: install demo test quick lint bench bench-levers clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: a short MNIST training, its evaluation, and a prediction.
# Offline it trains on the 5,000 MNIST digits shipped with cnncli (it says so, loudly).
demo: install
	$(CNNCLI) summary mnist_net
	$(CNNCLI) train configs/mnist.yaml --epochs 3
	$(CNNCLI) evaluate runs/mnist/latest
	$(CNNCLI) predict examples/digits/7.png --model runs/mnist/latest --top 3

# The whole test suite, slow end-to-end tests included, and the linter. Two worker
# processes (pytest-xdist; not more: each may hold a VGG16), a test module each at a
# time, in the order tests/conftest.py gives (the minutes-long modules first): on 2
# cores most tests wait on one core (TensorFlow's import, Python), so two at once take
# about 0.6 of the time. The fuzz tests (a few long ones) are spread test by test. The
# 20 slowest tests are listed at the end: where CI's minutes go.
WORKERS   := -n 2
BY_MODULE := --dist loadscope --no-loadscope-reorder
test: install
	$(VENV)/bin/ruff check cnncli tests bench examples
	$(PY) -m pytest $(WORKERS) $(BY_MODULE) -m "not fuzz" --durations=20
	$(PY) -m pytest $(WORKERS) -m fuzz tests/test_fuzz.py tests/test_check_then_train.py

# The fast tests only (what to run while changing code).
quick: install
	$(PY) -m pytest $(WORKERS) $(BY_MODULE) -m "not slow" -x -q

lint: install
	$(VENV)/bin/ruff check cnncli tests bench examples

bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

bench-levers: install
	$(PY) bench/levers.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
