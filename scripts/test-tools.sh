#!/usr/bin/env bash
# The tests' tools from Debian, installed once (scripts/test.sh calls this; the main job needs none of them).
set -euo pipefail
# Test tools from Debian: chromium for the dashboard's browser tests (playwright downloads no browser
# of its own), docker-compose to resolve the compose file offline (no Docker engine needed), wrk.
debs=()
command -v chromium >/dev/null 2>&1 || debs+=(chromium fonts-dejavu-core)
command -v docker-compose >/dev/null 2>&1 || debs+=(docker-compose)
command -v wrk >/dev/null 2>&1 || debs+=(wrk)  # the gateway's load test
if [ ${#debs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then as_root=(env)
  elif sudo -n true 2>/dev/null; then as_root=(sudo -n env)
  else as_root=(); fi
  if [ ${#as_root[@]} -gt 0 ]; then
    echo "== installing ${debs[*]} (Debian) for the tests"
    { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${debs[@]}"; } >/dev/null ||
      echo "== could not install ${debs[*]}: the tests that need them will skip (or fail under CI)" >&2
  else
    echo "== ${debs[*]} missing and this user cannot apt-get: tests that need them skip (or fail under CI)" >&2
  fi
fi

