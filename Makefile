# ips-inline: every target that needs root says so; run them as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
IPS := $(VENV)/bin/ips-inline
CONFIG ?=
CFG_ARG := $(if $(CONFIG),--config $(CONFIG),)

.PHONY: setup test lint unit demo lab-up lab-down replay-demo pcaps install-rules \
	uninstall-rules bench bench-replay bench-adversarial bench-engine fuzz clean corpus compiled

setup:
	@scripts/setup.sh

test: setup lint
	$(PY) -m pytest -q -ra

unit: setup
	$(PY) -m pytest -q -m "not netns"

# every capture under ../shared/corpus against tests/corpus_expected.toml (also in make test)
corpus: setup
	$(PY) scripts/corpus.py

# the packet path compiled with mypyc into ips_inline/_compiled/ (setup does it,
# skipping when current), then which build runs. IPS_INLINE_PURE=1: the .py modules.
compiled: setup
	$(IPS) --version

lint: setup
	$(VENV)/bin/ruff check ips_inline tests scripts

demo: setup
	scripts/demo.sh

lab-up: setup
	scripts/lab.sh up

lab-down:
	scripts/lab.sh down

replay-demo: setup
	@for f in pcaps/*.pcap pcaps/*.pcapng; do \
	  [ -e "$$f" ] || continue; \
	  printf '%-28s ' "$$f"; \
	  $(IPS) $(CFG_ARG) replay "$$f" | tail -n 1; \
	done

pcaps: setup
	$(PY) scripts/make_pcaps.py

install-rules: setup
	$(IPS) $(CFG_ARG) install-rules

uninstall-rules: setup
	$(IPS) $(CFG_ARG) uninstall-rules

bench: setup
	$(PY) scripts/bench/bench.py

FUZZ_SECONDS ?= 300
fuzz: setup
	$(VENV)/bin/pip install -q 'atheris>=2.3'
	$(PY) scripts/fuzz_atheris.py -max_total_time=$(FUZZ_SECONDS)

bench-replay: setup
	$(PY) scripts/bench_replay.py

bench-adversarial: setup
	$(PY) scripts/bench_adversarial.py

bench-engine: setup
	$(PY) scripts/bench_engine.py

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build *.egg-info ips_inline/_compiled
