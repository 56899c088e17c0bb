# Everyday commands; each one bootstraps the environment with uv from the lock file.
.PHONY: dev demo test lint fmt typecheck check rules bench schemas

dev:        ## run the service with embedded PostgreSQL and Kafka
	uv run relbank dev

demo:       ## the same, seeded with synthetic customers
	uv run relbank dev --demo

test:       ## the whole test suite against real PostgreSQL and the embedded broker
	uv run pytest

lint:
	uv run ruff check .
	uv run ruff format --check .

fmt:
	uv run ruff check --fix .
	uv run ruff format .

typecheck:
	uv run mypy

rules:      ## promtool check + unit tests of the alert rules
	bash deploy/prometheus/check.sh

check: lint typecheck rules test   ## what CI runs

bench:      ## HTTP ingest throughput, read latency, Kafka → ledger throughput on this machine
	uv run relbank bench http
	uv run relbank bench kafka

schemas:    ## regenerate schemas/ from the code's models
	uv run relbank schemas
