#!/bin/sh
# Runs once when the PostgreSQL container initialises its data directory.
# Creates one login role per process; migration 0002 grants each only what it needs.
# Passwords come from the environment (docker-compose passes them through).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE qa_api LOGIN PASSWORD '${QA_API_DB_PASSWORD}';
CREATE ROLE qa_relay LOGIN PASSWORD '${QA_RELAY_DB_PASSWORD}';
CREATE ROLE qa_consumer LOGIN PASSWORD '${QA_CONSUMER_DB_PASSWORD}';
CREATE ROLE qa_archiver LOGIN PASSWORD '${QA_ARCHIVER_DB_PASSWORD}';
CREATE ROLE qa_ops LOGIN PASSWORD '${QA_OPS_DB_PASSWORD}';
CREATE ROLE qa_notifier LOGIN PASSWORD '${QA_NOTIFIER_DB_PASSWORD}';
SQL
