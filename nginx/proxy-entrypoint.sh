#!/bin/sh
# Entry point of the proxy container: waits until the router has written a generation, then runs
# nginx in the foreground on the live config (the `current` symlink the router swaps atomically).
# A SIGHUP from the router reloads it; the proxy keeps serving the last good generation whatever
# the router does.
set -eu
CONF=/etc/appgw/nginx/current/nginx.conf
i=0
while [ ! -f "$CONF" ]; do
  [ $((i % 10)) -eq 0 ] && echo "proxy: waiting for the router to render $CONF" >&2
  i=$((i + 1))
  sleep 1
done
BIN=$(command -v openresty || command -v nginx)
exec "$BIN" -p /etc/appgw/nginx -c "$CONF" -g 'daemon off;'
