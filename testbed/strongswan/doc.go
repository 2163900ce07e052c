// Package strongswan runs strongSwan's charon (Debian's 5.9.8) as an
// independent IKEv2 and ESP peer inside testbed/lab hosts, for spugate's
// interop tests and benchmarks, and makes test PKIs with strongSwan's pki
// tool.
//
// # Running charon
//
//	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
//	conn, _ := strongswan.LineConn(ln, ln.GwB, strongswan.LineConnOptions{})
//	conn.Local.Auth, conn.Remote.Auth = "psk", "psk"
//	c, err := strongswan.Start(ln.GwB, strongswan.Config{
//		Dir: ln.LogDir, Conns: []strongswan.Conn{conn},
//		Secrets: strongswan.LinePSK([]byte("...")),
//	})
//	defer c.Stop()
//	err = c.Initiate("net", 10*time.Second)
//	sas, err := c.ListSAs()
//
// Start writes strongswan.conf and swanctl.conf into the instance
// directory <Dir>/<host>-<name>/ (with swanctl/ and its credential
// folders, the VICI socket charon.vici and the filelog charon.log), runs
// charon there through the lab (so that the lab stops it, by PID, on
// Close), waits for the VICI socket, loads everything with swanctl
// --load-all and checks that charon holds every connection, key, secret
// and certificate it was given (swanctl exits 0 when a file does not
// parse).
//
// The harness speaks VICI itself (vici.go) for initiate, terminate,
// list-sas, list-conns and stats: `swanctl --list-sas --raw` does not
// quote values, so an identity such as "CN=a b" cannot be told from the
// next key.
//
// # Facts of this platform
//
//   - The kernel has no ESP, so every instance loads kernel-libipsec
//     (userspace ESP through a TUN device, ipsec0, with routes in table 220
//     and a rule to it) besides kernel-netlink. kernel-libipsec always
//     encapsulates ESP in UDP 4500: charon fakes NAT detection (nat-fake
//     in list-sas) even without a NAT. One charon per host: the TUN device
//     is always called ipsec0.
//   - kernel-libipsec routes a child SA's remote selector into ipsec0 with
//     a source address taken from the local selector; when the host has no
//     address inside its local selector the child SA fails ("error
//     installing route with policy"). A host-to-host selector that equals
//     the IKE peer fails too (its route would swallow the IKE traffic).
//   - charon's pid file path is compiled in (/run/charon.pid): each
//     instance bind-mounts its own run/ over /run inside the mount
//     namespace `ip netns exec` gives it.
//   - charon's 16 default worker threads are too few here: about half are
//     held by kernel-libipsec and charon's services, and each blocking
//     VICI initiate holds one more until its tunnel is up; eight
//     concurrent initiates froze charon until they timed out. Settings
//     default Threads to 32.
//   - The VICI socket listens with a backlog of 3: concurrent clients get
//     EAGAIN, which the client here retries.
//   - A responder picks its connection by addresses and identities, not
//     traffic selectors: for many tunnels from one peer, give the responder
//     one connection whose child narrows, and unique = never (with the
//     default an INITIAL_CONTACT deletes the peer's other IKE SAs). One
//     peer address also trips cookie_threshold_ip (3 half-open SAs) and,
//     under load, lost IKE_SA_INITs cost a 4 s retransmission: raise it
//     with the other thresholds.
//   - over_time defaults to 10% of rekey_time: with rekey times of a few
//     seconds the old IKE SA's hard end coincides with its rekey and
//     charon moves the old SA's delete onto the new one, losing both. Set
//     OverTime explicitly with short lifetimes.
//   - RSASSA-PSS: Settings.RSAPSS (charon.rsa_pss) makes "pubkey" sign
//     with PSS, or name the scheme in the auth round ("rsa/pss-sha256",
//     "ike:rsa/pss-sha384"); the log then says RSA_EMSA_PSS_SHA2_256_SALT_32.
//     Ed25519 and ECDSA work with "pubkey". RSA-3072 chains already need
//     IKE fragmentation (on by default; Settings.FragmentSize sizes it).
//
// # Keys
//
// Config.DumpKeys logs the IKE and Child SA keys at level 4 (see keys.go
// for the log lines); Charon.Keys and ParseKeys extract them, oriented
// for the instance, and ChildKeys.TsharkESPSAs formats them for tshark's
// ESP decryption.
//
// # PKI
//
// PKI makes CAs, intermediates, end-entity certificates (ECDSA P-256 and
// P-384, RSA 2048/3072/4096, Ed25519; SANs, EKU flags such as serverAuth
// and ikeIntermediate; PSS signatures; any validity period, expired or not
// yet valid) and CRLs with the pki tool, all as PEM bytes and files.
// Files.AddIdentity and Files.AddCA place them for an instance.
package strongswan
