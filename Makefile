# clinic-pbx. `make run` and `make test` install whatever is missing (idempotently) first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install system asterisk venv web lint bench clean-state

install: system asterisk venv web

system:
	@scripts/install-system.sh

asterisk: system
	@scripts/install-asterisk.sh

venv: $(STAMP)

# the phone in the browser (#34): JsSIP from npm, bundled into web/static/vendor
web: system
	@scripts/install-web.sh

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Starts (or adopts) the embedded Asterisk and the server with the demo clinic; Ctrl-C stops
# the server, Asterisk keeps its calls (make clean-state or `clinic-pbx asterisk stop` stops it).
# The demo has no operator trunk: the robot calls patient-sim (demo patients +7 999 000-00-NN),
# and no message provider: messages go to the server's log and count as sent.
run: export CLINIC_PBX_ROBOT_DIAL ?= Local/{number}@patient-sim
run: export CLINIC_PBX_GATEWAY_DEMO ?= true
run: export CLINIC_PBX_MAIL_DEMO ?= true
run: install
	@$(BIN)/clinic-pbx init --demo
	@$(BIN)/clinic-pbx sounds >/dev/null
	@echo "Panel:    http://127.0.0.1:$${CLINIC_PBX_WEB_PORT:-8080}/"
	@if [ -f .local/state/initial-admin-password ]; then \
	    echo "Login:    admin / $$(cat .local/state/initial-admin-password)"; \
	else echo "Login:    admin (first password deleted at the first login; a new one: $(BIN)/clinic-pbx password admin)"; fi
	@echo "Demo call (another terminal): $(BIN)/clinic-pbx demo-call"
	@echo "Phone in the browser: log in with Chromium/Chrome on this machine, choose «Телефон в браузере»,"
	@echo "          then: $(BIN)/clinic-pbx demo-call --answer browser --talk-ms 20000 (answer on the call's card)"
	@echo "Website request for the callback robot: $(BIN)/clinic-pbx demo-request (with demo-phones running)"
	@$(BIN)/clinic-pbx run

test: install
	@$(BIN)/ruff check .
	@$(BIN)/pytest -q -p no:cacheprovider

lint: venv
	@$(BIN)/ruff check .

bench: install
	@$(BIN)/python bench/ami_parse.py

clean-state:
	@$(BIN)/clinic-pbx asterisk stop >/dev/null 2>&1 || true
	rm -rf .local/state .local/test-state
