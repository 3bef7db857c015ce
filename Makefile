# ramanedge: the two README commands are `make demo` and `make test`.
PYTHON ?= python3
DATA ?= ../shared/data/rruff
STAMP := .cache/installed.stamp
export OPENBLAS_NUM_THREADS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test lint bench frontier bench-smoke results clean

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e ".[train,edge,sim,baselines,dev]"
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

setup: $(STAMP)  ## install ramanedge with every extra (editable)

demo: $(STAMP)  ## build rruff-raw, train, refit, quantize, classify, adapt onboard, replay over serial
	$(PYTHON) -m benchmarks.demo --data $(DATA)

test: $(STAMP)  ## the test suite (CI runs this)
	$(PYTHON) -m pytest -q

lint: $(STAMP)
	$(PYTHON) -m ruff check .

bench: $(STAMP)  ## regenerate docs/benchmarks.md, its JSON and plots, then the frontier
	$(PYTHON) -m ramanedge.cli bench --data $(DATA)
	$(MAKE) frontier

EVAL ?= runs/flight/eval
frontier: $(STAMP)  ## multi-split rover-path evaluation (resumes) + docs/frontier.json and its plot
	$(PYTHON) -m benchmarks.flight_eval --data $(DATA) --recipe flight-ptq --grouped 0,1,2,3,4 --random 0 --out $(EVAL)
	$(PYTHON) -m benchmarks.flight_eval --data $(DATA) --recipe flight --grouped 0,1,2,3,4 --random 0 --out $(EVAL)
	$(PYTHON) -m benchmarks.flight_eval --data $(DATA) --recipe paper-m6 --grouped 0,1,2,3,4 --random 0 --out $(EVAL)
	$(PYTHON) -m benchmarks.frontier --eval $(EVAL)

bench-smoke: $(STAMP)  ## the quick benchmark run CI's smoke test exercises
	$(PYTHON) -m ramanedge.cli bench --smoke --data $(DATA)

clean:
	rm -rf .cache runs models bench_out
