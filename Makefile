# Two commands on a fresh machine (Python >= 3.10 and make):
#   make notebooks   run every notebook headless on the sample data into outputs/
#   make test        run the test suite, including nbval's re-execution of the notebooks
# Both create the virtual environment .venv and the sample data first when needed.
# The environment installs the exact versions in pylock.toml (CPython 3.11, Linux x86-64);
# `make install-latest` takes the newest releases pyproject.toml allows instead.
#   make capsule    the replication capsule: everything into results/ (see README, Reproducing)
#   make lock       regenerate pylock.toml from pyproject.toml (tools/lock.py)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs
RESULTS ?= results
# Extra notebook parameters, e.g.  make notebooks ARGS="-p epochs 30 -p mode full"
ARGS ?=

.PHONY: install install-latest lock data notebooks test capsule clean

# The lock's pins and hashes as a requirements file: pip then takes each file from wherever it
# is configured to look (a mirror, its cache) and checks its SHA-256 (see tools/lock.py).
$(VENV)/.installed: pyproject.toml pylock.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python tools/lock.py --requirements $(VENV)/lock-requirements.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(VENV)/lock-requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

install-latest:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --upgrade -e ".[all,test,lab]"
	touch $(VENV)/.installed

lock: install
	$(BIN)/python tools/lock.py

data: install
	$(BIN)/imgasdata sample-data --out data

notebooks: data
	$(BIN)/imgasdata notebooks --out $(OUT) $(ARGS)

test: data
	$(BIN)/python -m pytest tests notebooks --nbval \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-current-env \
		--nbval-cell-timeout 900 -p no:cacheprovider

capsule: install
	$(BIN)/imgasdata capsule run --results $(RESULTS) --overwrite $(ARGS)
	$(BIN)/imgasdata capsule check $(RESULTS)

clean:
	rm -rf $(OUT) .pytest_cache
