#!/usr/bin/env sh
# Chromium from Debian's packages, for the browser test of `ttabench report --html`
# (tests/test_html_report.py runs this itself when Chromium is missing and it is root).
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install_chromium.sh: needs root (apt-get install chromium)" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium
