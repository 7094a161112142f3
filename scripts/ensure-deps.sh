#!/usr/bin/env bash
# Installs what the gateway and its tests need on a fresh Debian machine, when it is missing:
# Debian's nginx with the Lua and stream modules (as root, or through sudo), the SSH and Redis
# servers and wrk used by tests and benchmarks, and the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || [ -n "${NGINX_BIN:-}" ] || need+=(libnginx-mod-http-lua)
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || [ -n "${NGINX_BIN:-}" ] || need+=(libnginx-mod-stream)
[ -f /usr/share/lua/5.1/resty/core.lua ] || [ -n "${NGINX_BIN:-}" ] || need+=(lua-resty-core)
[ -f /usr/share/lua/5.1/resty/lrucache.lua ] || [ -n "${NGINX_BIN:-}" ] || need+=(lua-resty-lrucache)
[ -f /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || ls /usr/lib/*/lua/5.1/cjson.so >/dev/null 2>&1 || [ -n "${NGINX_BIN:-}" ] || need+=(lua-cjson)
if [ "${APPGW_TEST_DEPS:-0}" = 1 ]; then
  command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server openssh-client)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "appgw: need root (or sudo) to install: ${need[*]}" >&2; exit 2; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the package starts a system nginx/redis on default ports; the gateway runs its own
  $SUDO systemctl disable --now nginx redis-server >/dev/null 2>&1 || true
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
