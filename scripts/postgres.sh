#!/usr/bin/env bash
# Starts the local PostgreSQL cluster (Debian's postgresql package) and makes a role and a
# database for the tests; prints the URL to use as TLAUNCH_TEST_POSTGRES. Safe to run repeatedly.
set -euo pipefail
ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
if [ -z "$ver" ]; then echo "scripts/postgres.sh: PostgreSQL is not installed (scripts/deps.sh installs it)" >&2; exit 1; fi
if [ "$(id -u)" -eq 0 ]; then AS="runuser -u postgres --"; else AS="sudo -u postgres"; fi
if ! pg_lsclusters -h | grep -q "^$ver "; then $AS pg_createcluster "$ver" main >/dev/null 2>&1 || pg_createcluster "$ver" main >/dev/null; fi
if ! pg_lsclusters -h | grep "^$ver " | grep -q online; then
  pg_ctlcluster "$ver" main start >/dev/null 2>&1 || $AS pg_ctlcluster "$ver" main start
fi
port=$(pg_lsclusters -h | awk -v v="$ver" '$1==v {print $3; exit}')
for _ in $(seq 1 50); do $AS psql -p "$port" -qtAc "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
$AS psql -p "$port" -qtAc "SELECT 1 FROM pg_roles WHERE rolname='tlaunch'" | grep -q 1 \
  || $AS psql -p "$port" -qc "CREATE ROLE tlaunch LOGIN PASSWORD 'tlaunch' CREATEDB" >/dev/null
$AS psql -p "$port" -qtAc "SELECT 1 FROM pg_database WHERE datname='tlaunch'" | grep -q 1 \
  || $AS psql -p "$port" -qc "CREATE DATABASE tlaunch OWNER tlaunch" >/dev/null
echo "postgres://tlaunch:tlaunch@127.0.0.1:$port/tlaunch"
