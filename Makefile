# mlstack: the commands a newcomer and CI need. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Tests run in parallel processes; multi-process training tests start their own workers on top. Three on
# two cores: the molecule scenarios start first (tests/conftest.py) and wait on their containers much of the
# time, and the worker of the shortest runs the other tests around them. Four overload the cores: the
# longest scenarios then ran past their limit.
PYTEST_WORKERS ?= 3
PYTEST_ARGS ?=
DEMO_EXTRAS := storage,tf,serving
ALL_EXTRAS := storage,tf,torch,serving,infra,ansible,dashboards,dev
# checkov scans the Pulumi program's rendered manifests; it lives in its own venv because it would
# downgrade boto3 and packaging in the main one. Its version is pinned here and nowhere else.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := build/tools/checkov
# Wheels of several hundred MB (torch, triton, the CUDA libraries) resume where an interrupted download stopped.
PIP_INSTALL = pip install -q --resume-retries 20
# The releases the Ansible roles install (ansible/releases/): jars resolved from Maven Central by a
# pinned POM and verified against Central's checksums; Kafka and Hadoop with our launchers beside them,
# packed reproducibly, the JMX exporter agent as its one jar. The file names come from the POM, where the
# versions are pinned.
pom_property = $(shell sed -n 's:.*<$(2)>\([^<]*\)</$(2)>.*:\1:p' $(1) | head -n 1)
KAFKA_POM := ansible/releases/kafka/pom.xml
KAFKA_RELEASE := build/releases/kafka_$(call pom_property,$(KAFKA_POM),scala.binary.version)-$(call pom_property,$(KAFKA_POM),kafka.version).tgz
HADOOP_POM := ansible/releases/hadoop/pom.xml
HADOOP_RELEASE := build/releases/hadoop-$(call pom_property,$(HADOOP_POM),hadoop.version).tar.gz
JMX_EXPORTER_POM := ansible/releases/jmx-exporter/pom.xml
JMX_EXPORTER_RELEASE := build/releases/jmx_prometheus_javaagent-$(call pom_property,$(JMX_EXPORTER_POM),jmx.exporter.version).jar
# `make demo DATA=s3://bucket/fashion-mnist/` trains on real Fashion-MNIST IDX files instead.
DATA ?=
DEMO_DIR ?= build/demo

.PHONY: help demo test lint pytest bench snapshots system-deps clean molecule-image molecule checkov releases

help: ## List the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# pip compiles bytecode on one core (over 2 min for TensorFlow and PyTorch); afterwards it runs on all of them.
# Without bytecode, where PYTHONDONTWRITEBYTECODE is set (as here), every import compiles from source. Files
# the venv's Python cannot compile (torch's py312 test helpers on 3.11) stay uncompiled, as pip leaves them.
COMPILE_VENV = $(BIN)/python -c 'import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0)' $(VENV)/lib

$(VENV)/.deps-demo: pyproject.toml | $(BIN)/python
	$(BIN)/$(PIP_INSTALL) --no-compile -e '.[$(DEMO_EXTRAS)]'
	$(COMPILE_VENV)
	touch $@

$(VENV)/.deps-all: pyproject.toml | $(BIN)/python
	$(BIN)/$(PIP_INSTALL) --no-compile -e '.[$(ALL_EXTRAS)]'
	$(COMPILE_VENV)
	touch $@ $(VENV)/.deps-demo

demo: $(VENV)/.deps-demo ## Run the whole pipeline locally (synthetic data unless DATA=<url>)
	$(BIN)/python -m workloads pipeline --workdir $(DEMO_DIR) $(if $(DATA),--data $(DATA))

system-deps: ## Install the Debian packages the tests use (needs root; prints what is missing otherwise)
	tests/support/system-deps.sh

lint: $(VENV)/.deps-all system-deps ## Lint Python, YAML, shell and Dockerfiles (ansible-lint runs in the tests)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint --strict .
	tests/support/lint-extra.sh $(BIN)

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/$(PIP_INSTALL) checkov==$(CHECKOV_VERSION)
	touch $@

checkov: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION) ## Install checkov (pinned) in its own venv for the infra scan

# Maven and a JDK first (system-deps), then the tarballs; the tests make the tarball target alone.
releases: system-deps ## Build the releases the roles install (Kafka, Hadoop, the JMX exporter from Maven Central jars) into build/releases
	$(MAKE) $(KAFKA_RELEASE) $(HADOOP_RELEASE) $(JMX_EXPORTER_RELEASE)

# A failed resolution or a checksum mismatch stops the build, naming the tarball and the jar.
$(KAFKA_RELEASE): $(KAFKA_POM) ansible/releases/lib.sh $(wildcard ansible/releases/kafka/build.sh ansible/releases/kafka/README.release ansible/releases/kafka/bin/* ansible/releases/kafka/config/*)
	ansible/releases/kafka/build.sh $(@D)

$(HADOOP_RELEASE): $(HADOOP_POM) ansible/releases/lib.sh $(wildcard ansible/releases/hadoop/build.sh ansible/releases/hadoop/README.release ansible/releases/hadoop/bin/* ansible/releases/hadoop/sbin/* ansible/releases/hadoop/libexec/* ansible/releases/hadoop/etc/hadoop/*) $(shell find ansible/releases/hadoop/webapps -type f 2>/dev/null)
	ansible/releases/hadoop/build.sh $(@D)

$(JMX_EXPORTER_RELEASE): $(JMX_EXPORTER_POM) ansible/releases/lib.sh ansible/releases/jmx-exporter/build.sh
	ansible/releases/jmx-exporter/build.sh $(@D)

pytest: $(VENV)/.deps-all system-deps checkov releases
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder --timeout 900 --durations 25 $(PYTEST_ARGS)

# The two venvs install side by side (pip runs on one core), and Maven assembles the releases meanwhile.
test: ## Install, lint and run every test this machine can run
	$(MAKE) -j2 $(VENV)/.deps-all checkov releases
	$(MAKE) lint pytest

bench: $(VENV)/.deps-all system-deps releases ## Run the benchmarks and rewrite docs/benchmarks.md (ONLY=name to run one)
	$(BIN)/python -m tests.bench.run $(if $(ONLY),--only $(ONLY))

snapshots: $(VENV)/.deps-all system-deps ## Redraw the dashboard pictures in docs/images from a live local run
	$(BIN)/python -m tests.dashboards.rig.snapshot

molecule-image: system-deps ## Start the test container engine and build the Debian 12 systemd image once
	@tests/support/dockerd.sh >/dev/null
	DOCKER_HOST=unix:///run/mlstack-docker.sock tests/support/molecule-image.sh

molecule: $(VENV)/.deps-all molecule-image ## Run the Ansible tests: lint, fast role tests and every molecule scenario
	PYTHONPATH=$(CURDIR) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder --timeout 1800 tests/ansible $(PYTEST_ARGS)

clean: ## Remove build output (keeps the virtual environment)
	rm -rf build .pytest_cache .ruff_cache
