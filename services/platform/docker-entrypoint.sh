#!/bin/sh
# On SIGTERM: create the shutdown marker (health then answers 503), pass the signal
# on so the app lets in-flight requests finish, and exit when it has.
# stop_grace_period in compose.yml (40s) is above the app's drain limit (30s).
marker=${SHUTDOWN_MARKER:-/tmp/shutdown}
mkdir -p "$(dirname "$marker")"
rm -f "$marker"
/app/platform &
pid=$!
trap 'touch "$marker"; kill -TERM "$pid" 2>/dev/null' TERM INT
# The first wait returns when a signal arrives; the second waits for the drain.
wait "$pid"
wait "$pid"
exit $?
