#!/usr/bin/env bash
# Installs, idempotently, what spugate's tests, demo and benchmarks need on
# Debian 12, as root. `make test`, `make demo` and `make bench` call it, so a
# fresh machine needs nothing by hand. When everything is present it touches
# no network and takes well under a second.
#
# The kernel of the target machines has no ESP (see docs/architecture.md): the
# independent IPsec peer is strongSwan's charon with its userspace ESP
# (kernel-libipsec, in libcharon-extra-plugins). Nothing here relies on
# `ip xfrm` encrypting.
set -euo pipefail

packages=(
	# lab: namespaces, veth, routes, NAT, diagnostics
	iproute2 nftables conntrack iputils-ping ethtool procps bash
	# make generate: bpf2go compiles bpf/*.c with clang 14
	clang llvm libbpf-dev linux-libc-dev
	# interop peer: charon, swanctl, pki, kernel-libipsec (userspace ESP),
	# openssl plugin (Ed25519, RSA-PSS), extra plugins
	strongswan-charon strongswan-swanctl strongswan-pki
	libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins
	# independent ESP decoder and encoder
	tshark python3-scapy
	# traffic and captures
	iperf3 tcpdump
	# metrics: promtool checks the -metrics endpoints' output, and a real
	# Prometheus scrapes a lab gateway (its own instance, in a namespace)
	prometheus
	# the userspace Go VPN the benchmark compares with, and the profiler the
	# benchmark report uses
	wireguard-go wireguard-tools linux-perf
	# packaging: systemd-analyze verify on the units (and the man pages they
	# name), the .deb's install into a scratch root, the man pages' check,
	# the daemons run under the units' capability bounding sets
	systemd dpkg man-db groff-base util-linux make
)

if [ "$(id -u)" -ne 0 ]; then
	echo "deploy/deps.sh: must run as root to install packages (try: sudo make ...)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "deploy/deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go: the machine kind ships it at /usr/local/go; say so plainly if absent.
export PATH=/usr/local/go/bin:$PATH
if ! command -v go >/dev/null; then
	echo "deploy/deps.sh: Go is not installed (expected /usr/local/go/bin/go, Go >= 1.26)" >&2
	exit 1
fi
gov=$(go env GOVERSION)
case "$gov" in
go1.2[6-9]* | go1.[3-9][0-9]*) ;;
*)
	echo "deploy/deps.sh: Go $gov is too old; spugate needs Go 1.26 or later" >&2
	exit 1
	;;
esac

# Debian's charon package may enable a system-wide service on systems that
# boot with systemd; the tests run their own charons in namespaces and need
# none outside them.
if command -v systemctl >/dev/null && systemctl is-active --quiet strongswan 2>/dev/null; then
	echo "deploy/deps.sh: note: a system strongswan service is running; tests use their own instances" >&2
fi
exit 0
