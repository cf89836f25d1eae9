#!/usr/bin/env bash
# Installs what ProAct's local stack, demo and tests need from the system's packages:
# Mosquitto, Redis and PostgreSQL (server binaries only: the test kit starts its own
# instances in temporary directories), plus, with --browser, Chromium and ChromeDriver for
# the dashboard's browser test. Idempotent and quiet when everything is present.
# On Debian/Ubuntu it installs with apt-get (as root, or through sudo); elsewhere it prints
# the commands to run.
set -euo pipefail

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    -h|--help) echo "usage: $0 [--browser]"; exit 0 ;;
    *) echo "install-deps: unknown argument $arg" >&2; exit 64 ;;
  esac
done

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have redis-server || missing+=(redis-server)
have mosquitto || missing+=(mosquitto)
have_pg || missing+=(postgresql)
if [ "$want_browser" = 1 ]; then
  have chromium || missing+=(chromium)
  have chromedriver || missing+=(chromium-driver)
fi
command -v python3 >/dev/null 2>&1 || missing+=(python3)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing ${missing[*]}; this is not a Debian/Ubuntu system, install them with your package manager, e.g.:" >&2
  echo "  brew install redis mosquitto postgresql@15        # macOS" >&2
  echo "  dnf install redis mosquitto postgresql-server     # Fedora/RHEL" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-deps: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
# Debian's postgresql package would create and start a cluster on port 5432, which the
# local stack uses: ProAct runs its own instances, so ask for none.
$sudo mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/proact.conf >/dev/null
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Package scripts may start system services on the default ports; the local stack needs them.
for svc in redis-server mosquitto; do
  if command -v service >/dev/null 2>&1; then $sudo service "$svc" stop >/dev/null 2>&1 || true; fi
done
echo "install-deps: done"
