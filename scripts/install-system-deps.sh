#!/usr/bin/env bash
# Install the system binaries the project needs: docker-compose (the deploy tests' `config`), nginx
# (the public port of `make run`, and `nginx -t`), wrk (the HTTP load generator of `make bench`) and
# chromium with chromium-driver (the live page's test in a real headless browser).
#
# Idempotent and quiet when everything is present. Run as root (make test / make bench call it) on
# Debian 12. `apt-get update` is only run when an install from the current package lists fails,
# so a machine that already has the binaries never touches the network.
#
# The Debian nginx package's postinst would start the system service (we run our own nginx with
# our own config), so a policy-rc.d that forbids service starts is in place during the install.
set -euo pipefail

missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: missing ${missing[*]}; run this script as root" >&2
    exit 1
fi

echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive

# Forbid invoke-rc.d from starting services while we install (exit 101 = action not allowed).
policy=/usr/sbin/policy-rc.d
policy_created=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    policy_created=1
fi
cleanup() {
    if [ "$policy_created" -eq 1 ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

apt_install() {
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/install-system-deps.log 2>&1
}

if ! apt_install; then
    apt-get update -q >/tmp/install-system-deps.update.log 2>&1
    if ! apt_install; then
        cat /tmp/install-system-deps.log >&2
        echo "install-system-deps: apt-get install ${missing[*]} failed" >&2
        exit 1
    fi
fi

# The package enables nginx at boot under systemd; the project runs nginx with its own config,
# never the system service, so keep that stopped and disabled. Without systemd this is a no-op.
case " ${missing[*]} " in
*" nginx "*)
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
    ;;
esac

for bin in docker-compose nginx wrk chromium chromedriver; do
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
        echo "install-system-deps: $bin still missing after install" >&2
        exit 1
    fi
done
