# The two commands of the README:
#   make run   - create .venv if needed, install, run the whole pipeline (dvc repro, via gadflow repro) on params.yaml
#   make test  - create .venv if needed, install, run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

# No outside calls: telemetry off for every tool in the stack.
export DO_NOT_TRACK = true
export MLFLOW_DISABLE_TELEMETRY = true
export PREFECT_SERVER_ANALYTICS_ENABLED = false
export DVC_NO_ANALYTICS = 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test install mlflow-ui clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	gadflow repro
	dvc metrics show

test: $(BIN)/.installed
	$(BIN)/python -m pytest

mlflow-ui: $(BIN)/.installed
	mlflow ui --backend-store-uri sqlite:///$(abspath mlflow.db) --host 127.0.0.1 --port 5000

clean:
	rm -rf outputs .prefect mlflow.db mlartifacts
