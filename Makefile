# ramanedge: the two README commands are `make demo` and `make test`.
PYTHON ?= python3
DATA ?= ../shared/data/rruff
STAMP := .cache/installed.stamp
export OPENBLAS_NUM_THREADS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test lint bench bench-smoke results clean

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e ".[train,edge,sim,baselines,dev]"
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

setup: $(STAMP)  ## install ramanedge with every extra (editable)

demo: $(STAMP)  ## build rruff-raw, train, quantize, classify, adapt onboard, replay over serial
	$(PYTHON) -m benchmarks.demo --data $(DATA)

test: $(STAMP)  ## the test suite (CI runs this)
	$(PYTHON) -m pytest -q

lint: $(STAMP)
	$(PYTHON) -m ruff check .

bench: $(STAMP)  ## regenerate docs/benchmarks.md, its JSON and plots
	$(PYTHON) -m ramanedge.cli bench --data $(DATA)

bench-smoke: $(STAMP)  ## the quick benchmark run CI's smoke test exercises
	$(PYTHON) -m ramanedge.cli bench --smoke --data $(DATA)

clean:
	rm -rf .cache runs models bench_out
