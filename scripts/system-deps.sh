#!/usr/bin/env bash
# Installs the system packages the test suite needs, from Debian, when they are
# missing: Chromium (browser tests, driven by Playwright; never a downloaded
# browser), Prometheus's promtool (config checks) and Alertmanager (the
# Alertmanager push test). Services are not started: a policy-rc.d that
# refuses starts is put in place for the install if the machine has none.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "borderwatch: missing system packages: ${need[*]}" >&2
  echo "  install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi

made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
trap '[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT

echo "borderwatch: installing ${need[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
