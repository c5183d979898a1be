# Two entry points for a newcomer: `make demo` (install + main job) and `make test` (install + tests).
VENV ?= .venv
PYTHON ?= python3
# A CPU build of torch where the machine offers one (this pin takes the local CPU wheel on our CI image).
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test install install-test lint format

demo: $(VENV)/.installed
	$(BIN)/garasam demo $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/ruff check garasam tests benchmarks scripts
	$(BIN)/ruff format --check garasam tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test]"
	# The official HQ-SAM and RobustSAM, parity references of tests/models/test_baseline_parity.py. Without
	# their dependencies: they ask for torchvision (and HQ-SAM's TinyViT for timm), which serve code the
	# tests never call, and torchvision's wheel would replace our torch (tests/official_baselines.py).
	$(BIN)/pip install -q --no-deps "segment-anything-hq==0.3" "robust-segment-anything==1.0.0"
	# The official SAM 2.1 (tests/models/test_sam2.py), an sdist: built against our torch, without its CUDA
	# extension (image mode does not use it) and without torchvision/iopath (tests/official_sam2.py).
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-deps --no-build-isolation "sam2==1.1.0"
	# vos-benchmark (MIT), the independent J and F of tests/video/test_metrics.py; without its opencv-python,
	# which would sit beside our opencv-python-headless (one cv2 serves it)
	$(BIN)/pip install -q --no-deps "vos-benchmark==0.1.0"
	bash scripts/install_chromium.sh
	touch $@

lint:
	$(BIN)/ruff check garasam tests benchmarks scripts

format:
	$(BIN)/ruff format garasam tests benchmarks scripts
	$(BIN)/ruff check --fix garasam tests benchmarks scripts
