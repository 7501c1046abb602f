# Two commands on a fresh machine (Python >= 3.10 and make):
#   make notebooks   run every notebook headless on the sample data into outputs/
#   make test        run the test suite, including nbval's re-execution of the notebooks
# Both create the virtual environment .venv and the sample data first when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs
# Extra notebook parameters, e.g.  make notebooks ARGS="-p epochs 30 -p mode full"
ARGS ?=

.PHONY: install data notebooks test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	touch $@

install: $(VENV)/.installed

data: install
	$(BIN)/imgasdata sample-data --out data

notebooks: data
	$(BIN)/imgasdata notebooks --out $(OUT) $(ARGS)

test: data
	$(BIN)/python -m pytest tests notebooks --nbval \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-current-env \
		--nbval-cell-timeout 900 -p no:cacheprovider

clean:
	rm -rf $(OUT) .pytest_cache
