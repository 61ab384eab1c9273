#!/usr/bin/env bash
# Debian's chromium and chromium-driver, for the demo's headless browser test
# (tests/test_serving_demo.py drives `aki demo` through Selenium). Run by `setup.sh --test`.
#
# Idempotent: nothing is installed when both programs are already on PATH. Needs root (apt-get);
# without root and without the programs it says what to run and exits 0, and the browser test
# skips with the same hint.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "setup-browser.sh: warning: chromium/chromedriver are missing and this is not root; install them with" \
       "'sudo apt-get install -y chromium chromium-driver' (the demo's browser test skips until then)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version
chromedriver --version
