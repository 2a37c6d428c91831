# Two commands on a fresh machine with python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo finetune test fuzz bench clean

# contrib/*: separately installable plugin distributions, installed after torchtk with a plain
# (non-editable) pip install, as a user would install them, so their tests run against the
# installed copy; torch stays as pip's constraint (the machine's pip.conf) pins it. Any change
# to one of their files reinstalls them.
CONTRIB := $(wildcard contrib/*/pyproject.toml)
CONTRIB_FILES := $(CONTRIB) $(shell find contrib -path '*/src/*' -type f -not -name '*.pyc' -not -path '*.egg-info/*' 2>/dev/null)

$(BIN)/tk: pyproject.toml $(CONTRIB_FILES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(if $(CONTRIB),$(BIN)/python -m pip install --quiet $(foreach p,$(CONTRIB),./$(dir $(p))))
	touch $(BIN)/tk

install: $(BIN)/tk

demo: install  ## install, then train the bundled rings example
	$(BIN)/tk train rings

finetune: install  ## the fine-tuning example: write PNGs, train task A, fine-tune on task B from its best.pt
	$(BIN)/python examples/finetune/make_images.py  # into examples/finetune/finetune-data, next to the specs
	$(BIN)/tk train examples/finetune/stage1.json --json > finetune-stage1.json
	$(BIN)/tk train examples/finetune/stage2.json --set model.params.weights=$$($(BIN)/python -c \
	  "import json; print(json.load(open('finetune-stage1.json'))['run_dir'])")/checkpoints/best.pt

test: install  ## the whole test suite
	$(BIN)/python -m pytest -q

fuzz: install  ## the long fuzz profile: 105,000 spec cases, 60,000 lr expressions, 10,000 loss calls (tests/fuzz)
	$(BIN)/python -m pytest tests/fuzz -m fuzz --hypothesis-profile=long -p no:cacheprovider

bench: install  ## performance targets, as ratios against references measured in the same run (Lightning's row: .[bench])
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/whole_run.py
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/checkpoint_memory.py
	$(BIN)/python benchmarks/image_loading.py
	$(BIN)/python benchmarks/accuracy_metric.py
	$(BIN)/python benchmarks/per_step.py  # framework share per callback, wrapper, metric, param group
	$(BIN)/python benchmarks/compile_cpu.py  # trainer.compile on the shapes-dice U-Net, CPU
	$(BIN)/python benchmarks/gpu_check.py  # resnet18 engine/hand ratios: on the GPU if there is one, else CPU sizes

clean:
	rm -rf $(VENV) runs examples/finetune/finetune-data finetune-stage1.json *.egg-info
