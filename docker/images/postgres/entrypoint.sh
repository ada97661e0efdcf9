#!/bin/sh
# Initialises the cluster on first start (trust auth: a disposable test database) in
# $PGDATA, a subdirectory of the volume so that any filesystem mounted there, even a
# fresh tmpfs, works; then supervises postgres: when postgres stops on its own (`pg_ctl stop`, as the
# db-restart fault does) it is started again; SIGTERM/SIGINT stop it for good.
# Extra arguments go to postgres (e.g. -c synchronous_commit=off).
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres --auth=trust --no-sync >/dev/null
  echo "host all all 0.0.0.0/0 trust" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "unix_socket_directories = '/run/postgresql'" >> "$PGDATA/postgresql.conf"
fi
set +e
stopping=
trap 'stopping=1; kill -TERM "$pid" 2>/dev/null' TERM INT
while :; do
  postgres -D "$PGDATA" "$@" &
  pid=$!
  wait "$pid"
  code=$?
  if [ -n "$stopping" ]; then
    wait "$pid" 2>/dev/null
    exit 0
  fi
  echo "pg-entrypoint: postgres exited ($code); starting it again" >&2
  sleep 0.1
done
