# The two commands of the README: `make demo` (quickstart) and `make test`.
# Both create .venv in the repository root on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch that our machines hold on local disk; override elsewhere (TORCH=torch).
TORCH  ?= torch==2.13.0

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[tensorboard]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,webdataset,tensorboard,wandb,mlflow]"
	touch $@

# FFCV builds from source against Debian's OpenCV and libjpeg-turbo (installed here when we
# are root, as in CI); without them its tests are skipped and core-plugins says why.
SYSTEM_LIBS := pkg-config libopencv-dev libturbojpeg0-dev
$(VENV)/.installed-ffcv: $(VENV)/.installed
	@if ! pkg-config --exists opencv4 libturbojpeg 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_LIBS); \
	  else echo "FFCV needs: sudo apt-get install $(SYSTEM_LIBS) (until then its tests are skipped)"; fi; \
	fi
	if pkg-config --exists opencv4 libturbojpeg 2>/dev/null; then \
	  $(BIN)/python -m pip install -q numpy setuptools wheel pillow && \
	  $(BIN)/python -m pip install -q --no-build-isolation -e ".[ffcv]"; fi
	touch $@

demo: $(VENV)/.installed
	$(BIN)/core-train --config configs/quickstart.yaml --overwrite

test: $(VENV)/.installed-dev $(VENV)/.installed-ffcv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
