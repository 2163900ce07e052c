#!/bin/bash
# Records a real IKEv2 exchange between two strongSwan charons (5.9.8) for
# the codec's tests: charon "a" (198.18.0.1) initiates to charon "b"
# (198.18.0.2) over a veth pair between two network namespaces created and
# removed here. It keeps every IKE datagram (tcpdump) and the keys charon
# logs at level 4, so that the tests can decode charon's bytes, derive the
# same keys and decrypt charon's SK payloads. Run as root:
#
#   capture.sh CASE IKE_PROPOSALS ESP_PROPOSALS [psk|cert] [fragment_size]
#
# Output in ./CASE/: packets.txt (one datagram a line: "src dst hex", the
# non-ESP marker of port 4500 kept), keys.txt (charon's key log lines),
# case.txt (the parameters and the PSK). Everything is bounded in time.
set -euo pipefail
CASE=$1 IKE=$2 ESP=$3 AUTH=${4:-psk} FRAG=${5:-1280}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${CAPTURE_OUT:-$HERE/$CASE}
WORK=$(mktemp -d /tmp/ikecap.XXXXXX)
NSA=ikecap-a-$$ NSB=ikecap-b-$$
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	ip netns del $NSA 2>/dev/null || true
	ip netns del $NSB 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add $NSA
ip netns add $NSB
ip link add ikecap-a netns $NSA type veth peer name ikecap-b netns $NSB
ip -n $NSA addr add 198.18.0.1/24 dev ikecap-a
ip -n $NSB addr add 198.18.0.2/24 dev ikecap-b
ip -n $NSA link set ikecap-a up
ip -n $NSB link set ikecap-b up
ip -n $NSA link set lo up
ip -n $NSB link set lo up
ip -n $NSA route add default via 198.18.0.2
ip -n $NSA addr add 198.18.10.1/32 dev lo
ip -n $NSB addr add 198.18.20.1/32 dev lo
ip -n $NSB route add default via 198.18.0.1

PSK=spugate-interop-psk-0123456789

if [ "$AUTH" = cert ]; then
	mkdir -p "$WORK/pki"
	pki --gen --type rsa --size 3072 --outform pem >"$WORK/pki/ca.key"
	pki --self --ca --in "$WORK/pki/ca.key" --dn "CN=spugate test CA" --outform pem >"$WORK/pki/ca.crt"
	pki --gen --type rsa --size 3072 --outform pem >"$WORK/pki/b.key"
	pki --req --in "$WORK/pki/b.key" --dn "CN=b.spugate.test" --san b.spugate.test --outform pem >"$WORK/pki/b.csr"
	pki --issue --cacert "$WORK/pki/ca.crt" --cakey "$WORK/pki/ca.key" --in "$WORK/pki/b.csr" --type pkcs10 \
		--san b.spugate.test --flag serverAuth --outform pem >"$WORK/pki/b.crt"
fi

setup() { # name addr peer local_id remote_id local_auth remote_auth
	local n=$1 d=$WORK/$1
	mkdir -p "$d/run" "$d/swanctl/conf.d" "$d/swanctl/x509" "$d/swanctl/x509ca" "$d/swanctl/private"
	cat >"$d/strongswan.conf" <<EOF
charon {
	load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints curve25519 aes sha1 sha2 hmac gcm chapoly kdf socket-default vici kernel-libipsec kernel-netlink
	install_routes = no
	retransmit_tries = 1
	retransmit_timeout = 1.0
	fragment_size = $FRAG
	filelog {
		log {
			path = $d/charon.log
			default = 1
			ike = 4
			chd = 4
			enc = 1
			flush_line = yes
		}
	}
	plugins {
		vici {
			socket = unix://$d/charon.vici
		}
	}
}
swanctl {
	socket = unix://$d/charon.vici
}
EOF
	cat >"$d/swanctl/swanctl.conf" <<EOF
connections {
	t {
		version = 2
		local_addrs = $2
		remote_addrs = $3
		proposals = $IKE
		fragmentation = yes
		local {
			auth = $6
			id = $4
			$([ "$6" = pubkey ] && echo "certs = b.crt")
		}
		remote {
			auth = $7
			id = $5
		}
		children {
			c {
				local_ts = $8
				remote_ts = $9
				esp_proposals = $ESP
			}
		}
	}
}
secrets {
	ike-1 {
		id-a = a.spugate.test
		id-b = b.spugate.test
		secret = "$PSK"
	}
}
EOF
	if [ "$AUTH" = cert ]; then
		cp "$WORK/pki/ca.crt" "$d/swanctl/x509ca/"
		if [ "$n" = b ]; then
			cp "$WORK/pki/b.crt" "$d/swanctl/x509/"
			cp "$WORK/pki/b.key" "$d/swanctl/private/"
		fi
	fi
}
if [ "$AUTH" = cert ]; then
	setup a 198.18.0.1 198.18.0.2 a.spugate.test b.spugate.test psk pubkey 198.18.10.0/24 198.18.20.0/24
	setup b 198.18.0.2 198.18.0.1 b.spugate.test a.spugate.test pubkey psk 198.18.20.0/24 198.18.10.0/24
else
	setup a 198.18.0.1 198.18.0.2 a.spugate.test b.spugate.test psk psk 198.18.10.0/24 198.18.20.0/24
	setup b 198.18.0.2 198.18.0.1 b.spugate.test a.spugate.test psk psk 198.18.20.0/24 198.18.10.0/24
fi

start_charon() { # ns name
	local d=$WORK/$2
	ip netns exec "$1" sh -c "mount --bind '$d/run' /run && STRONGSWAN_CONF='$d/strongswan.conf' exec timeout 30 /usr/lib/ipsec/charon" \
		>"$d/stdout" 2>&1 &
	PIDS+=($!)
}
ip netns exec $NSA timeout 25 tcpdump -i ikecap-a -U -w "$WORK/cap.pcap" udp port 500 or udp port 4500 >/dev/null 2>&1 &
PIDS+=($!)
start_charon $NSA a
start_charon $NSB b
for d in a b; do
	for _ in $(seq 50); do [ -S "$WORK/$d/charon.vici" ] && break; sleep 0.1; done
	STRONGSWAN_CONF=$WORK/$d/strongswan.conf SWANCTL_DIR=$WORK/$d/swanctl swanctl --load-all >/dev/null 2>&1
done
SW="env STRONGSWAN_CONF=$WORK/a/strongswan.conf timeout 12 swanctl"
# IKE_SA_INIT + IKE_AUTH, then CREATE_CHILD_SA (Child SA rekey, then IKE
# SA rekey) and INFORMATIONAL (delete), each step logged with its keys.
$SW --initiate --child c --timeout 10 >"$WORK/initiate.txt" 2>&1 || true
sleep 0.5
$SW --rekey --child c >>"$WORK/initiate.txt" 2>&1 || true
sleep 0.5
$SW --rekey --ike t >>"$WORK/initiate.txt" 2>&1 || true
sleep 0.5
$SW --terminate --ike t --timeout 5 >>"$WORK/initiate.txt" 2>&1 || true
sleep 0.5
kill "${PIDS[0]}" 2>/dev/null || true
sleep 0.5

mkdir -p "$OUT"
tshark -r "$WORK/cap.pcap" -T fields -e ip.src -e udp.srcport -e ip.dst -e udp.dstport -e udp.payload 2>/dev/null |
	awk '{print $1":"$2, $3":"$4, $5}' >"$OUT/packets.txt"
# Key lines: charon prints "%B" chunks as a header line then hex lines.
cat "$WORK/a/charon.log" | sed 's/^/a /' >"$WORK/all.log"
cat "$WORK/b/charon.log" | sed 's/^/b /' >>"$WORK/all.log"
grep -A17 -E 'shared Diffie Hellman secret|SKEYSEED|Sk_(d|ai|ar|ei|er|pi|pr) secret|(encryption|integrity) (initiator|responder) key' "$WORK/all.log" |
	grep -vE '^--$' >"$OUT/keys.txt" || true
{
	echo "ike=$IKE"
	echo "esp=$ESP"
	echo "auth=$AUTH"
	echo "fragment_size=$FRAG"
	echo "psk=$PSK"
	echo "strongswan=$(/usr/lib/ipsec/charon --version 2>/dev/null || true)"
} >"$OUT/case.txt"
grep -E 'IKE_SA .* established|CHILD_SA .* established|failed|error' "$WORK/all.log" | head -20 >"$OUT/result.txt" || true
cat "$OUT/result.txt"
wc -l "$OUT/packets.txt"
