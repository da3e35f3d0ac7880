#!/usr/bin/env bash
# Debian packages the system needs beyond Python's, installed when missing
# and apt-get can run (make run and make test call this; so does CI):
# - fonts-wqy-microhei: the CJK font the review service embeds in the public
#   notice (公示) PDF;
# - poppler-utils: pdftotext, which the tests use to read that PDF back;
# - chromium, chromium-driver: the headless browser and its WebDriver that the
#   staff console's browser tests drive (tests/e2e/test_console_browser.py).
# Kafka and PostgreSQL are fetched or installed by subsidy_dev when started.
set -euo pipefail
need=()
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
command -v pdftotext >/dev/null || need+=(poppler-utils)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null; then
    echo "missing system packages: ${need[*]} (no apt-get here: install them by hand)" >&2
    exit 1
fi
echo "installing system packages: ${need[*]}" >&2
$sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
