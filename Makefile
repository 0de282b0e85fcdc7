# Developer entry points for slim. Every target that needs Python sets up .venv itself, so
# `make test` / `make demo` work on a fresh checkout (issue 2 §1).

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_IMAGE ?= sample_images/hello-glibc/hello-glibc.docker.tar

.PHONY: venv test demo lint bench clean-venv

venv: $(STAMP)

# Re-installs only when .venv is missing or pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

# pytest exit 5 = no tests collected: a failure too (make exits 2 for any failing recipe).
test: $(STAMP)
	@rc=0; $(VPY) -m pytest -q || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

demo: $(STAMP)
	$(VENV)/bin/slim analyze $(DEMO_IMAGE)

lint: $(STAMP)
	$(VENV)/bin/ruff check slim tests
	$(VENV)/bin/mypy slim

bench: $(STAMP)
	$(VPY) -m bench $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
