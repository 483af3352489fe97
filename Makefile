# psml course kit. The two commands a newcomer needs: `make lab` and `make test`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
export PSML_VENV := $(abspath $(VENV))
# Open MPI refuses root (containers, CI) without these; harmless for normal users.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1

.PHONY: lab test setup setup-test build lock doctor site bench clean help

help:            ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

lab: setup       ## create everything needed, then open the course in JupyterLab
	@$(PY) -m psml build --if-stale
	@tools/lab.sh $(LAB_ARGS)

test: setup-test ## run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

hub:             ## instructors: a class on a JupyterHub here (HUB_ARGS="--roster class.csv", docs/workshop.md)
	@PSML_SETUP_HUB=1 tools/setup.sh
	@$(PY) -m psml build --if-stale
	$(PY) -m psml hub start $(HUB_ARGS)

setup:           ## system packages, .venv with the pinned packages, the course kernel
	@tools/setup.sh

setup-test:
	@PSML_SETUP_TEST=1 tools/setup.sh

build: setup     ## regenerate exercises/ from solutions/ (nbgrader)
	$(PY) -m psml build

doctor: setup    ## check the environment
	$(PY) -m psml doctor

lock:            ## re-resolve pyproject.toml's ranges into requirements.lock
	@test -x $(VENV)/bin/uv || { python3 -m venv $(VENV) && $(PY) -m pip install -q uv; }
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock
	python3 tools/envfile.py

site: setup      ## build the course site (lectures with outputs, exercises, guides) into book/_build/html
	$(PY) book/make_site.py

bench: setup     ## run the benchmarks; each writes its figures to results/
	@mkdir -p results; for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:           ## remove the environment and caches (not your work)
	rm -rf $(VENV) .cache .pytest_cache
