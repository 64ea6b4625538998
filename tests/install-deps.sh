#!/bin/sh
# Installs, idempotently, what Skyport needs: `run` for the running product (QEMU and the
# default guest image for the local-vmm provider), `test` for the test suite (the same, plus
# the AWS CLI, boto3 and moto in .venv, the FOCUS validator in .venv-focus, Chromium and its
# driver with axe-core in .node, and cargo-fuzz on the nightly toolchain).
# Safe to run again: it only installs what is missing.
set -eu
what=${1:-run}
root=$(cd "$(dirname "$0")/.." && pwd)

need_cmd() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "install-deps: '$1' not found; $2" >&2
        exit 1
    }
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "install-deps: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

# QEMU 7.2 from Debian 12. The machine may carry a newer qemu-utils backport that Breaks
# bookworm's qemu-system-common, so qemu-utils is pinned to bookworm (a downgrade).
# The guest image is built from busybox-static, cpio and dropbear-bin; the running local-vmm
# plugin uses genisoimage (NoCloud seeds), dnsmasq-base (DHCP) and nftables (NAT).
install_qemu() {
    if command -v qemu-system-x86_64 >/dev/null 2>&1 && command -v qemu-img >/dev/null 2>&1 &&
        command -v cpio >/dev/null 2>&1 && [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 &&
        [ -x /usr/sbin/dropbear ] && [ -x /usr/bin/genisoimage ] && [ -x /usr/sbin/dnsmasq ] &&
        [ -x /usr/sbin/nft ]; then
        return 0
    fi
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        --allow-downgrades qemu-system-x86 qemu-utils/bookworm busybox-static cpio dropbear-bin \
        genisoimage dnsmasq-base nftables >/dev/null
    need_cmd qemu-system-x86_64 "the QEMU install failed"
}

# The AWS CLI, boto3, Apache Libcloud, Ansible (with amazon.aws) and moto (the EC2-compatible
# server the tests use as a remote cloud), pinned, in a project-local virtualenv (.venv).
# Rebuilt only when the pins change.
PY_PINS="moto[server]==5.2.5 awscli==1.46.3 boto3==1.44.5 apache-libcloud==3.9.1 ansible==12.3.0"
install_python_tools() {
    venv="$root/.venv"
    stamp="$venv/skyport-pins"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$PY_PINS" ]; then
        return 0
    fi
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv "$venv.probe" >/dev/null 2>&1; then
        as_root apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            python3 python3-venv >/dev/null
    fi
    rm -rf "$venv.probe" "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # the pins are separate words
    "$venv/bin/pip" install -q --disable-pip-version-check $PY_PINS
    echo "$PY_PINS" >"$stamp"
}

# The FinOps Foundation's FOCUS validator, which checks the FOCUS export in the tests
# (tests/tests/focus.rs), in its own virtualenv (.venv-focus): version 2.2.1, the first with
# the FOCUS 1.2 rules, needs Python 3.12 or newer (Debian 12 ships 3.11, so a python3.12 or
# python3.13 on PATH or under pyenv is used). Its pyarrow needs numpy 2 although it pins
# numpy below 2, so numpy 2 is installed after it. It reads ISO currency codes from
# focus_validator/rules/currency_codes.csv under its working directory (otherwise it would
# download them): .venv-focus/workdir holds a copy of the list it ships.
FOCUS_PINS="focus-validator==2.2.1 numpy==2.5.5"
find_python312() {
    # pyenv's shims are on PATH for every version it has, runnable or not: try each.
    for candidate in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
        if "$candidate" -c 'import sys, venv; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
install_focus_validator() {
    venv="$root/.venv-focus"
    stamp="$venv/skyport-pins"
    if [ -x "$venv/bin/focus-validator" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$FOCUS_PINS" ]; then
        return 0
    fi
    python=$(find_python312) || {
        echo "install-deps: the FOCUS validator needs Python 3.12 or newer (python3.12 or python3.13 on PATH, or under pyenv); none was found" >&2
        exit 1
    }
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "focus-validator==2.2.1"
    # pip warns of the pin it overrides (on stderr); the import below checks the result.
    "$venv/bin/pip" install -q --disable-pip-version-check "numpy==2.5.5" 2>/dev/null
    "$venv/bin/python" -c 'import numpy, pyarrow, focus_validator; assert numpy.__version__ == "2.5.5"'
    package=$("$venv/bin/python" -c 'import focus_validator, os; print(os.path.dirname(focus_validator.__file__))')
    mkdir -p "$venv/workdir/focus_validator/rules"
    cp "$package/rules/currency_codes.csv" "$venv/workdir/focus_validator/rules/"
    echo "$FOCUS_PINS" >"$stamp"
}

# The tests log in to their VMs with a real SSH client (and make its keys with ssh-keygen).
install_ssh_client() {
    if command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; then
        return 0
    fi
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        openssh-client >/dev/null
    need_cmd ssh "the openssh-client install failed"
}

# The scale-out tests start their own PostgreSQL and Redis servers (Debian's, as shipped)
# on loopback ports with temporary data directories. Installing the packages may start
# Debian's own instances where an init system runs; the tests never use them.
install_database_servers() {
    if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1; then
        return 0
    fi
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        postgresql-15 redis-server >/dev/null
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || {
        echo "install-deps: the postgresql-15 install failed" >&2
        exit 1
    }
    need_cmd redis-server "the redis-server install failed"
}

# The console's browser tests drive Debian's Chromium through its chromedriver (a tool's
# own browser download cannot be relied on), and check each page with axe-core, pinned,
# from the npm registry into .node (Debian's nodejs and npm install it).
AXE_CORE_VERSION=4.14.1
install_browser_tools() {
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 ||
        ! command -v npm >/dev/null 2>&1; then
        # npm only when missing: a machine whose Node.js comes from elsewhere (NodeSource's
        # nodejs ships its own npm) conflicts with Debian's npm package.
        packages="chromium chromium-driver"
        command -v npm >/dev/null 2>&1 || packages="$packages npm"
        as_root apt-get update -q >/dev/null
        # shellcheck disable=SC2086 # the packages are separate words
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            $packages >/dev/null
        need_cmd npm "the npm install failed"
        need_cmd chromium "the chromium install failed"
        need_cmd chromedriver "the chromium-driver install failed"
    fi
    axe="$root/.node/node_modules/axe-core"
    if [ "$(cat "$axe/skyport-pin" 2>/dev/null)" != "$AXE_CORE_VERSION" ]; then
        npm install --silent --no-audit --no-fund --prefix "$root/.node" "axe-core@$AXE_CORE_VERSION" >/dev/null
        [ -f "$axe/axe.min.js" ] || {
            echo "install-deps: axe-core $AXE_CORE_VERSION did not install" >&2
            exit 1
        }
        echo "$AXE_CORE_VERSION" >"$axe/skyport-pin"
    fi
}

# The fuzz targets (tests/fuzz) build on the nightly toolchain with cargo-fuzz, pinned.
CARGO_FUZZ_VERSION=0.13.2
install_fuzz_tools() {
    if ! cargo +nightly --version >/dev/null 2>&1; then
        need_cmd rustup "the fuzz targets need the nightly toolchain; install rustup, or a nightly toolchain"
        rustup toolchain install nightly --profile minimal
    fi
    if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
        cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
    fi
}

need_cmd cargo "install the Rust toolchain (rustup or Debian's cargo) first"
need_cmd cc "install a C compiler: apt-get install -y build-essential"

case "$what" in
run)
    install_qemu
    "$root/plugins/local-vmm/prepare-guest.sh" "$root/var/images/skyport-tiny" >/dev/null
    ;;
test)
    install_qemu
    install_ssh_client
    install_python_tools
    install_focus_validator
    install_database_servers
    install_browser_tools
    install_fuzz_tools
    "$root/plugins/local-vmm/prepare-guest.sh" "$root/target/guest/skyport-tiny" >/dev/null
    ;;
cluster)
    install_database_servers
    ;;
*)
    echo "usage: $0 run|test|cluster" >&2
    exit 2
    ;;
esac
echo "install-deps: $what dependencies present"
