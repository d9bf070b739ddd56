# Two commands on a fresh machine with Python 3.11:
#   make demo   set up, run a training run and a detection run continuing it, serve the dashboard
#   make test   set up and run the whole test suite (browser tests need Debian's chromium)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast bench soak chromium postgresql lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[notebooks,test,bench,postgres]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/runtool demo

# Debian's chromium for the dashboard's browser tests (root on Debian; CI runs this).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "chromium missing: browser tests will be skipped"; fi; }

# Debian's PostgreSQL server for the PostgreSQL store's tests (root on Debian; CI runs this).
# The tests start their own throwaway server from its binaries; nothing is left running.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	  else echo "postgresql missing: PostgreSQL store tests will be skipped"; fi; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider tests
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax notebooks/training.ipynb notebooks/detection.ipynb

# The suite without the tests that start kernels, workers, Voila or a browser, and with 20
# instead of 80 examples per fuzz test, for quick edits: seconds. The kernel watch fails it
# if a test in it starts a kernel anyway.
test-fast: $(STAMP)
	RUNTOOL_TEST_NO_KERNEL=1 RUNTOOL_FUZZ_EXAMPLES=20 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not browser and not kernel" tests

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The fault campaign's long soaks (docs/reliability.md): ~15 min; sizes are options of the script.
soak: $(STAMP)
	$(BIN)/python scripts/fault_soak.py

lint: $(STAMP)
	$(BIN)/ruff check runtool tests
	$(BIN)/mypy runtool

clean:
	rm -rf $(VENV) *.egg-info
