#!/usr/bin/env bash
# PostgreSQL init script for the compose stack (run once, by the postgres image, on an empty data
# volume). Three roles, as relbank expects in production:
#   relbank_owner    LOGIN, owns the database: runs `relbank migrate` (the migrate service)
#   relbank_runtime  NOLOGIN: what the service may do; the migrations grant it SELECT and INSERT
#                    only on the append-only tables (events, ledger_entries, alerts)
#   relbank_app      LOGIN, member of relbank_runtime: the relbank service connects as it
# Local passwords only, like everything in this stack.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE ROLE relbank_owner LOGIN PASSWORD 'relbank-owner-local';
CREATE ROLE relbank_runtime NOLOGIN;
CREATE ROLE relbank_app LOGIN PASSWORD 'relbank-app-local' IN ROLE relbank_runtime;
CREATE DATABASE relbank OWNER relbank_owner;
SQL
