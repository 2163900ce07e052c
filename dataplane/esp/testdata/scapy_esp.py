"""Independent ESP encoder/decoder for spugate's cross-check test.

Reads a JSON list of cases on stdin. For each case it decrypts (and
authenticates) the packets spugate encapsulated, and encrypts the inner
packets it is given, with scapy's SecurityAssociation. Prints a JSON list
of results. Run by scapy_test.go with /usr/bin/python3.
"""
import json
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation


def l3(data):
    return IPv6(data) if data[0] >> 4 == 6 else IP(data)


def make_sa(c):
    if c["v6outer"]:
        tunnel = IPv6(src=c["src"], dst=c["dst"])
    else:
        tunnel = IP(src=c["src"], dst=c["dst"])
    nat = UDP(sport=c["port"], dport=c["port"]) if c["udp"] else None
    kw = dict(crypt_algo=c["crypt"], crypt_key=bytes.fromhex(c["key"]),
              tunnel_header=tunnel, nat_t_header=nat)
    if c["auth"]:
        kw.update(auth_algo=c["auth"], auth_key=bytes.fromhex(c["integ"]))
    if c["esn"]:
        kw.update(esn_en=True, esn=c["esn_hi"])
    return SecurityAssociation(ESP, spi=c["spi"], **kw)


def main():
    results = []
    for c in json.load(sys.stdin):
        sa = make_sa(c)
        res = {"decrypted": [], "encrypted": [], "errors": []}
        for w in c["wire"]:
            try:
                inner = sa.decrypt(l3(bytes.fromhex(w)))
                res["decrypted"].append(bytes(inner).hex())
            except Exception as e:  # report, the Go side fails the test
                res["decrypted"].append("")
                res["errors"].append("decrypt: %s: %s" % (type(e).__name__, e))
        for i, p in enumerate(c["inner"]):
            kw = {"seq_num": c["seq"] + i}
            if c["esn"]:
                kw.update(esn_en=True, esn=c["esn_hi"])
            pkt = sa.encrypt(l3(bytes.fromhex(p)), **kw)
            if pkt.haslayer(UDP):
                # scapy 2.5 computes the NAT-T UDP length before adding
                # ESP (it says 8); let it recompute from the whole packet.
                del pkt[UDP].len
                pkt = pkt.__class__(bytes(pkt))
            res["encrypted"].append(bytes(pkt).hex())
        results.append(res)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
