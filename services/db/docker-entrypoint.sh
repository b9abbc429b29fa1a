#!/bin/sh
# Starts PostgreSQL on $PGDATA (the named volume). On the first start, with an
# empty volume, it makes the cluster as the postgres user: superuser postgres
# with $POSTGRES_PASSWORD (from the inventory's env), database $POSTGRES_DB,
# password logins from the network. Then it execs postgres, so docker stop's
# signal reaches the server itself.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_DB:=postgres}"
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /run/postgresql
	chown postgres:postgres "$PGDATA" /run/postgresql
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups /bin/sh "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "db: POSTGRES_PASSWORD is empty; set it in the inventory's env" >&2
		exit 1
	fi
	case $POSTGRES_DB in
	*[!a-z0-9_]* | [0-9]*)
		echo "db: POSTGRES_DB must be lower-case letters, digits and _" >&2
		exit 1
		;;
	esac
	echo "db: first start, making the cluster in $PGDATA"
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
		--auth-local=peer --auth-host=scram-sha-256 >/dev/null
	rm -f "$pwfile"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	if [ "$POSTGRES_DB" != postgres ]; then
		echo "CREATE DATABASE $POSTGRES_DB" | postgres --single -D "$PGDATA" postgres >/dev/null
	fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
