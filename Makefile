# make run: install into .venv when needed, migrate, load the demo, serve on 127.0.0.1:$(PORT)
# make test: the whole test suite
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do $$p -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: install migrate run test check demo clean

$(BIN)/.installed: pyproject.toml clients/python/pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is needed (python3 not found)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]" -e clients/python
	@touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

demo: export WEBHOOK_ALLOWED_HOSTS ?= 127.0.0.1,localhost
demo: migrate
	$(BIN)/python manage.py load_demo

# The demo application listens on loopback, which the SSRF guard refuses unless allowed.
run: export WEBHOOK_ALLOWED_HOSTS ?= 127.0.0.1,localhost
run: export DEMO_PASSWORD ?= demo
run: demo
	@echo "Dashboard: http://127.0.0.1:$(PORT)/  (sign in as demo / $$DEMO_PASSWORD)"
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho -f Procfile start

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: install
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var/*.sqlite3* var/broker
