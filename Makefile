# The two README commands: `make demo` (the main job on the embedded default) and `make test`.
# Both run the idempotent set-up first; on a machine already set up it takes seconds.
.PHONY: setup demo test bench lint
PYTEST_ARGS ?=

setup:
	bash scripts/setup.sh

demo: setup
	scripts/in-env.sh cigocc demo

test: setup
	scripts/in-env.sh python -m pytest $(PYTEST_ARGS)

bench: setup
	scripts/in-env.sh python bench/model_bench.py

lint: setup
	scripts/in-env.sh ruff check cigocc_ros test bench launch
