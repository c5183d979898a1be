#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test (Playwright drives it; it never downloads a browser).
set -eu
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "note: chromium is not installed and cannot be installed here; browser tests will be skipped" >&2
fi
