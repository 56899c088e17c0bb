# Everyday commands; each one bootstraps the environment with uv from the lock file.
.PHONY: dev demo test lint fmt typecheck check rules deploy bench schemas docs

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

deploy:     ## every check of deploy/: rules, dashboard, Kubernetes, compose
	bash deploy/check.sh

check: lint typecheck deploy test   ## what CI runs

bench:      ## every benchmark in one run, with the same-run limit and baseline ratios
	uv run relbank bench all

schemas:    ## regenerate schemas/ from the code's models
	uv run relbank schemas

docs:       ## regenerate the README's generated tables (settings, policy, reason codes)
	uv run python -m service.docs README.md
