#!/usr/bin/env bash
# Make sure Debian's Chromium (and CJK fonts, so Chinese text renders in screenshots) is installed for the
# portal's Playwright tests. Playwright drives /usr/bin/chromium; no browser build is ever downloaded.
# Needs root (apt-get); does nothing when Chromium is already there.
set -euo pipefail

# grep without -q reads fc-list to the end: with -q it can exit first, fc-list then dies of SIGPIPE and, under
# pipefail, the check failed and reinstalled everything although both were there.
if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -i "noto.*cjk" >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: /usr/bin/chromium or fonts-noto-cjk is missing and installing them needs root" >&2
    exit 1
fi
echo "ensure-chromium: installing Debian's chromium and fonts-noto-cjk (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null
/usr/bin/chromium --version >&2
