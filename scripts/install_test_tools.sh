#!/usr/bin/env sh
# The system tools the test suite uses: ip, tc and sysctl (network namespaces, the network lab),
# mount and unshare (the full-disk and Slurm tests), git (the checkout's own checks), Chromium
# (the HTML report's browser tests drive it through Playwright; Playwright's own browser download
# is not used).
# Installed with apt-get when missing and root; otherwise what is missing is named and the
# tests that need it skip (under CI=true they fail: tests/conftest.py).
set -eu
missing=""
for tool in ip:iproute2 tc:iproute2 sysctl:procps mount:mount unshare:util-linux git:git chromium:chromium; do
    cmd=${tool%%:*}
    pkg=${tool#*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
    fi
done
# The lab tests build labs with TCP cubic (Linux's default, netlab's). A host can offer cubic
# and still keep network namespaces from choosing it: a namespace may only pick what
# net.ipv4.tcp_allowed_congestion_control lists (seen: "reno bbr" on a host whose default is
# bbr). As root, cubic is added to that list; the host's own default is left as it is.
allowed=/proc/sys/net/ipv4/tcp_allowed_congestion_control
if [ "$(id -u)" = 0 ] && [ -w "$allowed" ] \
    && grep -qw cubic /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null \
    && ! grep -qw cubic "$allowed"; then
    was=$(cat "$allowed")
    if echo "$was cubic" 2>/dev/null > "$allowed"; then
        echo "install_test_tools.sh: allowed network namespaces TCP cubic (was: $was)"
    else  # the lab tests then fail with netlab's own error, which names this sysctl
        echo "install_test_tools.sh: could not add cubic to $allowed (was: $was)" >&2
    fi
fi
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_test_tools.sh: missing packages:$missing (install them as root; tests that need them skip)" >&2
    exit 0
fi
apt-get update -qq
# shellcheck disable=SC2086
# fonts-dejavu-core: the report's pages and figures name DejaVu Sans (screenshots look the same everywhere)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing fonts-dejavu-core >/dev/null
