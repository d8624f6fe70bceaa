# tuina: set-up, simulated session, tests. Every target is idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tuina-installed
DEBS := libusb-1.0-0 libegl1 libegl-mesa0 libgl1 libgles2 libosmesa6 chromium
SESSION ?= sim
# torch 2.13.0 (anny's, and the vlm extra's): its CPU wheel lies in /opt/wheels where the machine
# has it, and a constraint holds pip to it (for the bare pin pip takes PyPI's 2.13.0, a CUDA
# build of several GB with triton, whose import crashes a process that loaded open3d and MuJoCo
# first); elsewhere PyPI's
FIND_LINKS := $(if $(wildcard /opt/wheels/torch-*.whl),--find-links /opt/wheels)
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl))
TORCH_PIN := $(if $(TORCH_WHEEL),--constraint $(VENV)/torch-cpu.txt)

.PHONY: setup run console test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_WHEEL),echo 'torch==2.13.0+cpu' > $(VENV)/torch-cpu.txt)
	$(BIN)/python -m pip install -q $(FIND_LINKS) $(TORCH_PIN) -e '.[dev,vlm]'
	@# a venv set up before the constraint holds the CUDA build's triton: gone with it
	@$(BIN)/python -m pip uninstall -q -y triton 2>/dev/null || true
	@touch $(STAMP)

# BODY=person: a person on the simulated table (world) and a human body model fitted to it
# (grounding); the capsule phantom otherwise
BODY ?= phantom
BODY_SETS := $(if $(filter person,$(BODY)),--set world.BODY=person --set grounding.BODY_MODEL=anny)

run: setup
	$(BIN)/tuina run dataflows/$(SESSION).yml --stop-after 300s $(BODY_SETS)

console: setup
	$(BIN)/tuina run dataflows/$(SESSION).yml --console

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# measurements, not tests (nothing here fails on the machine's speed): the depth model's cost
# per frame, the wall-clock control loop of a sim session, the registration search over 20
# seeded body placements
bench: setup
	$(BIN)/python benchmarks/depth_model.py
	$(BIN)/python benchmarks/control_loop.py --graph dataflows/sim.yml
	$(BIN)/tuina eval registration --placements 20

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
