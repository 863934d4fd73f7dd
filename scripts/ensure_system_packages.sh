#!/usr/bin/env bash
# Make sure the Debian packages the tests and the demo need are installed:
#   bubblewrap    (bwrap: the python grader's sandbox)
#   chromium      (the dashboard's screenshot test)
#   wordnet-base  (METEOR's synonyms, /usr/share/wordnet)
# Missing ones are installed with apt-get as root, or through passwordless `sudo -n`.
# Otherwise it stops, before any other work, with one line naming the command to run.
# Nothing is downloaded outside the Debian package archive.
# `make test`, `make demo` and `.ci/run` all call this script.
#
# OPENRFT_WORDNET_FILE overrides the file that proves wordnet-base is installed (tests).
set -euo pipefail

wordnet_file="${OPENRFT_WORDNET_FILE:-/usr/share/wordnet/data.noun}"

missing_packages() {
  local need=()
  command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  [ -f "$wordnet_file" ] || need+=(wordnet-base)
  echo "${need[*]}"
}

read -r -a need <<<"$(missing_packages)"
((${#need[@]})) || exit 0

install_command="apt-get install -y --no-install-recommends ${need[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "openrft: missing system packages (${need[*]}) and no apt-get here; install them with" \
       "your package manager (Debian/Ubuntu: sudo $install_command)" >&2
  exit 1
fi
if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as_root=(sudo -n)
else
  echo "openrft: missing system packages (${need[*]}); run: sudo apt-get update &&" \
       "sudo $install_command" >&2
  exit 1
fi

echo "openrft: installing system packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

read -r -a still <<<"$(missing_packages)"
if ((${#still[@]})); then
  echo "openrft: apt-get finished but ${still[*]} is still missing; run: sudo $install_command" >&2
  exit 1
fi
