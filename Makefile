# make run: install the runtime into .venv when needed, migrate, load the demo, serve on 127.0.0.1:$(PORT)
# make test: add the test tools (and Debian's chromium), then run the whole test suite
# make bench: the engine benchmarks of BENCHMARKS.md (bench/run.py), each printing one JSON line
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do $$p -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs the runtime only, `make test` adds the `test` extra.
RUNTIME := $(VENV)/.installed-runtime
TESTING := $(VENV)/.installed-test
# The browser tests drive Debian's chromium from this path.
CHROMIUM ?= /usr/bin/chromium
PORT ?= 8000
DEMO_PORT ?= 8100
# Where the dashboard serves, the base of every callbackUrl: computed once here so every
# process agrees (honcho gives each Procfile process its own PORT).
PUBLIC_URL ?= http://127.0.0.1:$(PORT)
# honcho sends SIGKILL 5 s after SIGTERM, a constant (nickstenning/honcho#189), while a Celery
# worker's warm shutdown (finish or hand back its work) takes ~7 s even idle on the filesystem
# broker: honcho's own command line, given 30 s. Inline, so it imports nothing of the project.
HONCHO = $(BIN)/python -c 'import sys; from honcho import command, manager; manager.KILL_WAIT = 30; sys.exit(command.main())'

.PHONY: install install-test chromium chromium-install migrate run test check demo clean bench

$(RUNTIME): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is needed (python3 not found)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(TESTING): $(RUNTIME) clients/python/pyproject.toml
	$(BIN)/python -m pip install -q -e ".[test]" -e clients/python
	@touch $@

install: $(RUNTIME)

install-test: $(TESTING)

# As root with apt-get, install it; otherwise (or if that fails) stop at once with one line.
chromium: chromium-install
	@$(if $(shell test -x $(CHROMIUM) && echo found),,$(error make test: the browser tests need Debian's chromium at $(CHROMIUM); install it with 'sudo apt-get install chromium'))

chromium-install:
	@test -x $(CHROMIUM) || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || { \
	  echo "make test: installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || true

migrate: install
	$(BIN)/python manage.py migrate --noinput

demo: export WEBHOOK_ALLOWED_HOSTS ?= 127.0.0.1,localhost
demo: migrate
	$(BIN)/python manage.py load_demo

# The demo application listens on loopback, which the SSRF guard refuses unless allowed.
# The last Procfile process prints the address and the login once everything is up.
# honcho runs the Procfile. Ctrl-C makes it stop every process and exit 130, the normal way
# out: the recipe's shell leaves the signal to honcho and exits 0 then, so make adds no
# "Interrupt" line.
# The console shows warnings and errors (LOG_LEVEL=INFO shows every task).
run: export PORT := $(PORT)
run: export WEB_PORT := $(PORT)
run: export DEMO_PORT := $(DEMO_PORT)
run: export PUBLIC_URL := $(PUBLIC_URL)
run: export WEBHOOK_ALLOWED_HOSTS ?= 127.0.0.1,localhost
run: export DEMO_PASSWORD ?= demo
run: export LOG_LEVEL ?= WARNING
run: demo
	@trap '' INT; PATH="$(abspath $(BIN)):$$PATH" $(HONCHO) start -f Procfile || [ $$? -eq 130 ]

test: chromium install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench: the engine's benchmarks (BENCHMARKS.md), each with its own database, a real worker and
# an application stub; PostgreSQL and Redis when DATABASE_URL / CELERY_BROKER_URL are set.
BENCH = $(BIN)/python bench/run.py
bench: install
	$(BENCH) dispatch --tests 10000
	$(BENCH) dispatch --tests 100000
	$(BENCH) slow-app --tests 2000 --latency-ms 500 --concurrency 100
	$(BENCH) slow-app --tests 10000 --latency-ms 1000 --concurrency 500
	$(BENCH) ingest --results 5000 --clients 16
	$(BENCH) results --variants 20 --tasks 100000

check: install
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var/*.sqlite3* var/broker
