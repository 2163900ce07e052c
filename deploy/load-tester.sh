#!/usr/bin/env bash
# Builds strongSwan's load-tester plugin, which Debian does not ship, from
# Debian's source package of the installed strongSwan, and lays out a copy of
# the plugin folder with it added: the IKE benchmark bind-mounts that copy over
# /usr/lib/ipsec/plugins in the mount namespace of its load-generating charon
# only, so that no other charon on the machine can load the plugin (it comes
# with fixed credentials that authenticate anyone).
#
# Idempotent: when the copy for the installed strongSwan version exists it
# prints its path and touches nothing. `make load-tester` runs it, and the
# bench runs it on demand. As root, on Debian 12; about 5 minutes on 2 cores.
#
# Output: $SPUGATE_CACHE/load-tester/plugins (default /var/cache/spugate), with
# a VERSION file naming the strongSwan package version it was built for.
set -euo pipefail

me=deploy/load-tester.sh
say() { echo "$me: $*"; }
die() {
	echo "$me: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, /var/cache); try: sudo make load-tester"

cache=${SPUGATE_CACHE:-/var/cache/spugate}/load-tester
plugins=/usr/lib/ipsec/plugins
out=$cache/plugins
so=libstrongswan-load-tester.so

version=$(dpkg-query -W -f='${Version}' strongswan-charon 2>/dev/null) ||
	die "strongswan-charon is not installed (run make deps first)"
upstream=${version%%-*}
upstream=${upstream#*:}

if [ -f "$out/$so" ] && [ "$(cat "$out/VERSION" 2>/dev/null)" = "$version" ]; then
	say "load-tester for strongSwan $version already built: $out"
	exit 0
fi

deps=(build-essential pkg-config libgmp-dev libssl-dev libcap-dev dpkg-dev)
missing=()
for p in "${deps[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing build dependencies: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "could not install ${missing[*]}"
fi

# apt-get source needs deb-src entries. Debian 12's image has only deb ones:
# add the same mirrors and suites as deb-src in a file of our own.
src_list=/etc/apt/sources.list.d/spugate-deb-src.sources
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	[ -f /etc/apt/sources.list.d/debian.sources ] ||
		die "no deb-src entry in the apt sources and no /etc/apt/sources.list.d/debian.sources to derive one from: add a deb-src line for Debian's mirror"
	say "adding deb-src entries for Debian's mirrors: $src_list"
	sed -e 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$src_list"
	apt-get update -qq || die "apt-get update failed with the deb-src entries of $src_list"
fi

work=$cache/src
rm -rf "$work"
mkdir -p "$work"
cd "$work"
# The installed version's source first; a security update may be gone from
# the mirror, and another Debian revision of the same upstream release has
# the same plugin ABI.
# Candidates: the installed version, then every other Debian revision of
# the same upstream release the sources list, newest first.
mapfile -t others < <(apt-cache showsrc strongswan 2>/dev/null | sed -n 's/^Version: //p' |
	grep -F "$upstream-" | grep -vxF "$version" | sort -rV)
[ ${#others[@]} -gt 0 ] || apt-cache showsrc strongswan >/dev/null 2>&1 ||
	die "apt has no source package strongswan: is a deb-src entry for Debian's mirror in /etc/apt/sources.list.d and the mirror reachable?"
fetched=
for v in "$version" "${others[@]}"; do
	say "fetching Debian's source of strongswan $v into $work"
	if apt-get source -qq "strongswan=$v" >"$work/fetch.log" 2>&1; then
		fetched=$v
		break
	fi
	say "strongswan $v's source is not on the mirror ($(grep -m1 '^E:' "$work/fetch.log" || echo 'apt-get source failed'))"
	find "$work" -mindepth 1 -maxdepth 1 ! -name fetch.log -exec rm -rf {} +
done
[ -n "$fetched" ] ||
	die "no source of strongswan $upstream on the mirror (tried $version ${others[*]}): is the deb-src entry for Debian's mirror right?"
tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'strongswan-*' | head -n1)
[ -n "$tree" ] || die "apt-get source left no strongswan-* folder in $work"
got=${tree##*/strongswan-}
[ "$got" = "$upstream" ] ||
	die "the mirror's strongswan source is $got, the installed charon $upstream: the plugin would not match its ABI"

cd "$tree"
say "configuring $tree (load-tester on, the rest as Debian's charon needs)"
./configure -q --prefix=/usr --sysconfdir=/etc --libdir=/usr/lib --libexecdir=/usr/lib \
	--enable-mediation --with-capabilities=libcap --enable-load-tester --disable-stroke \
	--disable-scepclient --enable-openssl --disable-gmp >"$work/configure.log" 2>&1 ||
	die "configure failed: see $work/configure.log"
# Only the two libraries: the whole tree wants automake again because of
# Debian's patches to the build files.
jobs=$(nproc)
say "building src/libstrongswan and src/libcharon with $jobs jobs (log $work/make.log)"
{ make -j"$jobs" -C src/libstrongswan && make -j"$jobs" -C src/libcharon; } >"$work/make.log" 2>&1 ||
	die "make failed: see the end of $work/make.log"
built=src/libcharon/plugins/load_tester/.libs/$so
[ -f "$built" ] || die "the build made no $built"

say "laying out $out: a copy of $plugins with $so"
rm -rf "$out.new"
cp -a "$plugins" "$out.new"
install -m 0644 "$built" "$out.new/$so"
echo "$version" >"$out.new/VERSION"
rm -rf "$out"
mv "$out.new" "$out"
say "done: $out"
