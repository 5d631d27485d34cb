# adlab: every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision as this machine's pip serves them (a capped local index); override elsewhere,
# e.g. `make install TORCH="torch torchvision"`
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.adlab-installed
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo test lint bench clean peers ui

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,sweeps,serve,ui]"
	touch $(STAMP)

# fetch CoIL 2000, train the flagship propensity scorer, print its test metrics beside the baseline's
demo: install
	$(BIN)/adlab-data fetch coil2000
	$(BIN)/adlab-train experiment=propensity_coil extras.print_config=false

test: install
	WANDB_MODE=offline $(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

# MLflow's UI over the runs trained with `logger=mlflow` (their store: <OUTPUTS>/mlflow.db), on 127.0.0.1 only
OUTPUTS ?= outputs
UI_PORT ?= 5000
ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(OUTPUTS))/mlflow.db --host 127.0.0.1 --port $(UI_PORT) --workers 1

bench: install
	$(BIN)/python scripts/bench_harness.py

# peer libraries, kept out of adlab's dependencies, for side-by-side baselines in a venv of their own:
# pymc-marketing (BG/NBD + Gamma-Gamma of the value family), implicit (ALS of the recommendation family),
# pytabkit (RealMLP, TabM), catboost, lightgbm (scripts/bench_peers.py); run e.g. .venv-peers/bin/adlab-train ...
PEERS_VENV ?= .venv-peers
PEERS ?= pymc-marketing implicit tensorboard thop texttable tabulate colorama pytabkit catboost lightgbm
# RecBole (SASRec peer of the recommendation family, scripts/recbole_sasrec.py) without its pinned deps: ray
# (hyper-parameter search, unused; a stand-in at import) is left out, torch/numpy/colorlog stay as they are
RECBOLE ?= recbole==1.2.1
peers: $(PEERS_VENV)/.adlab-peers-installed

$(PEERS_VENV)/.adlab-peers-installed: pyproject.toml Makefile
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q $(TORCH)
	$(PEERS_VENV)/bin/python -m pip install -q -e ".[dev,sweeps]" $(PEERS)
	$(PEERS_VENV)/bin/python -m pip install -q --no-deps $(RECBOLE)
	touch $@

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
