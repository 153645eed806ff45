# The two commands of the README: `make demo` (set-up + the main job on the offline
# default) and `make test` (set-up + lint + the test suite, as CI runs it).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint format
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml scripts/setup.sh
	scripts/setup.sh
	touch $@

demo: setup
	rm -rf var/demo && mkdir -p var/demo && cp examples/sample.po var/demo/sample.po
	$(BIN)/translate-po var/demo/sample.po --show 5

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: setup lint
	$(BIN)/python -m pytest -q
