# Leadflow developer commands. Every target creates and uses its own virtual environment (.venv).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: up demo kafka services test-kafka4 test-cluster replay-demo test lint typecheck unit integration bench bench-stream bench-funnel bench-sink bench-collector bench-collector-abuse bench-webhooks bench-soak clean sample system-deps

# System packages the tests use: Chromium (headless rendering of the funnel report and the browser
# tracker), Prometheus (promtool checks and a live scrape), wrk (collector load benchmark),
# docker-compose (v1: `docker-compose config` checks the compose file offline), openssl (the TLS test's
# certificate authority and certificates), Java and Maven (Apache Kafka from Maven Central).
SYSTEM_BINARIES := /usr/bin/chromium /usr/bin/promtool /usr/bin/prometheus /usr/bin/wrk /usr/bin/docker-compose /usr/bin/openssl /usr/bin/java /usr/bin/mvn
SYSTEM_PACKAGES := chromium prometheus wrk docker-compose openssl openjdk-17-jre-headless maven

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The whole product on this machine (embedded broker, worker, sink, collector, console);
## extra options with ARGS, e.g. make up ARGS=--with-simulator.
up: $(STAMP)
	$(VENV)/bin/leadflow up $(ARGS)

## The live demo (embedded broker, a worker, the journey simulator) in the terminal.
demo: $(STAMP)
	$(VENV)/bin/leadflow demo

## Replay the shipped sample offline and show transitions, alerts and the summary.
replay-demo: $(STAMP)
	mkdir -p out
	$(VENV)/bin/leadflow replay samples/journeys.jsonl --until 2026-11-01T00:00:00Z \
	  --out out/transitions.jsonl --alerts out/alerts.jsonl --deadletter out/deadletter.jsonl \
	  --contacts out/contacts.jsonl
	@echo "--- last 5 transitions (out/transitions.jsonl) ---"; tail -n 5 out/transitions.jsonl
	@echo "--- last 3 became_hot alerts (out/alerts.jsonl) ---"; tail -n 3 out/alerts.jsonl
	@echo "--- dead letters (out/deadletter.jsonl) ---"; cat out/deadletter.jsonl

## Install the system packages the tests need (Debian; needs root or sudo), only when missing.
system-deps:
	@missing=""; for b in $(SYSTEM_BINARIES); do [ -x "$$b" ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing $(SYSTEM_PACKAGES) (missing:$$missing)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; }; \
	fi

## The servers the tests use, installed and started when missing (idempotent): PostgreSQL from Debian's
## packages on 127.0.0.1:5432 (database test), and Apache Kafka's jars from Maven Central, cached under
## ~/.cache/leadflow (the test fixtures start the Kafka nodes themselves).
services: $(STAMP)
	scripts/postgres-up
	@# Apache Kafka: `leadflow kafka --fetch` runs `mvn dependency:copy-dependencies` for
	@# org.apache.kafka:kafka_2.13 (pinned) + a logging binding from Maven Central into the cache;
	@# the test fixtures start the KRaft nodes with `java -cp 'libs/*' kafka.Kafka`.
	@echo "kafka jars: $$($(VENV)/bin/leadflow kafka --fetch)"

## Apache Kafka on this machine without Docker (KRaft, cached jars) on localhost:9092, for trying the
## production profile by hand; ARGS="--nodes 3" for a three-broker cluster. Ctrl-C stops it.
kafka: $(STAMP)
	$(VENV)/bin/leadflow kafka $(ARGS)

## Everything CI checks: lint, types, all tests (unit + integration on Apache Kafka, the embedded
## broker and real databases).
test: $(STAMP) system-deps services lint typecheck
	$(VENV)/bin/pytest -q

## The equivalence and crash tests on Apache Kafka 4.x (KAFKA4 picks the version), Kafka only.
KAFKA4 ?= 4.4.0
test-kafka4: $(STAMP) services
	LEADFLOW_KAFKA_VERSION=$(KAFKA4) LEADFLOW_TEST_BROKERS=kafka $(VENV)/bin/pytest -q \
	  tests/integration/streaming/test_pipeline.py -k "equals_replay or crash"

## The three-broker cluster's fault tests alone (they are part of make test too).
test-cluster: $(STAMP) services
	$(VENV)/bin/pytest -q tests/integration/cluster

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy pipeline

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

integration: $(STAMP)
	$(VENV)/bin/pytest -q tests/integration

## Regenerate the shipped sample (deterministic).
sample: $(STAMP)
	$(VENV)/bin/leadflow sample samples/journeys.jsonl --contacts 300 --seed 7

## Replay 1M generated events and compare with an orjson parse-only ceiling on the same file.
bench: $(STAMP)
	$(PY) benchmarks/bench_replay.py --events 1000000
	cd benchmarks && ../$(PY) bench_state_size.py --events 200000

## (a)-(g) on 100,000 events, then (h): 10 minutes of a steady 2,000 events/s over 100,000 contacts with
## demo_request latency, consumer lag and a plot under out/; all of it on Tansu, then on one Apache Kafka
## node (the cached jars), then the two side by side. Options with ARGS, e.g. ARGS=--quick,
## ARGS="--broker kafka" or ARGS="--skip-throughput --skip-latency --steady-seconds 60".
bench-stream: $(STAMP) system-deps
	$(PY) benchmarks/bench_stream.py $(ARGS)

## The funnel report over 1M transitions on PostgreSQL (127.0.0.1:5432, database test).
bench-funnel: $(STAMP)
	$(PY) benchmarks/bench_funnel.py

## The HTTP collector under wrk on loopback: requests/s and p99 at 1 and 100 events per request.
bench-collector: $(STAMP) system-deps
	$(PY) benchmarks/bench_collector.py

## The collector's abuse limits: wrk floods the public key from one address while another client keeps its 202s.
bench-collector-abuse: $(STAMP) system-deps
	$(PY) benchmarks/bench_abuse.py

## Webhook deliveries per second to a loopback receiver that verifies every signature.
bench-webhooks: $(STAMP)
	$(PY) benchmarks/bench_webhooks.py

## Soak: 30 minutes at 300 events/s over 200,000 contacts on Tansu, then 30 on Apache Kafka; memory, lag and
## latency over time (ARGS="--minutes 3", ARGS="--broker kafka").
bench-soak: $(STAMP) system-deps
	$(PY) benchmarks/bench_soak.py $(ARGS)

## The history sink's throughput into PostgreSQL, against a plain consumer of the same records.
bench-sink: $(STAMP)
	$(PY) benchmarks/bench_sink.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
