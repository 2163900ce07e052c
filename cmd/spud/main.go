// Command spud is spugate's data-plane daemon. See dataplane/spud.
//
//	spud -i wan0,lan0 -protected lan0 [-spus N] [-cpus 0,1] [-poll adaptive|busy]
//	     [-xdp auto|native|generic] [-xsk auto|copy|zerocopy] [-steer-carrier auto|meta|shim|none]
//	     [-max-policies N] [-socket PATH] [-cipher-idle 30s] [-gogc 50] [-memory-limit 4GiB]
//	     [-release-quiet=true] [-metrics 127.0.0.1:9814 [-metrics-per-tunnel N]]
//
// It runs in the foreground until SIGTERM or SIGINT, then detaches its XDP
// program and removes its socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/spu"
	"github.com/spugate/spugate/dataplane/spud"
	"github.com/spugate/spugate/dataplane/spudmetrics"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/internal/daemonlog"
	"github.com/spugate/spugate/internal/gomem"
	"github.com/spugate/spugate/internal/promserve"
	"github.com/spugate/spugate/internal/version"
	"github.com/vishvananda/netlink/nl"
)

func main() {
	var (
		ifaces     = flag.String("i", "", "data-plane interfaces, comma-separated (required)")
		protected  = flag.String("protected", "", "the cleartext-side interfaces among them, comma-separated")
		spus       = flag.Int("spus", 0, "number of SPUs (default: one per CPU in -cpus)")
		cpus       = flag.String("cpus", "", "CPUs to pin SPUs to, comma-separated (default: all)")
		queues     = flag.Int("queues", 0, "rx queues per interface to serve (default: all)")
		poll       = flag.String("poll", "adaptive", "polling mode: adaptive or busy")
		xdpMode    = flag.String("xdp", "auto", "XDP mode: auto, native or generic")
		xskMode    = flag.String("xsk", "auto", "AF_XDP mode: auto, copy or zerocopy")
		carrier    = flag.String("steer-carrier", "auto", "how the XDP program hands each frame's anchor to the SPUs: auto (the best this kernel allows), meta (XDP metadata), shim (a shim in front of the frame) or none (the SPUs classify frames again)")
		socket     = flag.String("socket", api.DefaultSocket, "SA API socket")
		logical    = flag.Int("logical", 256, "number of logical SPUs (a power of two)")
		maxPols    = flag.Int("max-policies", steer.DefaultMaxPolicies, fmt.Sprintf("steering entries per address family (a policy has one per protected interface and pair of selector prefixes), at most %d; kernel memory is taken only as policies are added", steer.MaxMaxPolicies))
		keyFile    = flag.String("key-file", "/run/spugate/anchor.key", "anchor hash key, kept across restarts (empty: new each start)")
		maxSleep   = flag.Duration("max-sleep", 100*time.Millisecond, "longest sleep of an idle SPU in adaptive mode")
		speedPad   = flag.Int("speed-pad", 48, "extra ESP padding of small AES-GCM packets, in bytes, so that Go's AES-GCM takes its fast path at both ends (0: RFC minimum padding)")
		cipherIdle = flag.Duration("cipher-idle", spu.DefaultCipherIdle, "drop an SA's cipher state (some 700 bytes for AES-GCM) once it has carried no packet for between this and twice this; its next packet makes it again (0: never, every SA keeps it once it carried a packet)")
		failOpen   = flag.Bool("fail-open", false, "let protected cleartext reach the kernel when spud is gone (default: drop it)")
		verbose    = flag.Bool("v", false, "debug logging (-log-level debug)")
		logLevel   = flag.String("log-level", "info", "log level: debug, info, warn or error (spuctl log-level changes it at run time)")
		logFormat  = flag.String("log-format", "text", "log format: text (key=value) or json (one object a line)")
		check      = flag.Bool("check", false, "check the command line, the interfaces, the anchor key file and the kernel's support for the steering program, without starting; exit 0 if spud would start, 1 if not (the reasons on stderr)")
		gogc       = flag.String("gogc", "", fmt.Sprintf("GC target percent: the heap may grow by this share of the live heap between collections, or off (default $GOGC, else %d)", gomem.DefaultGCPercent))
		memLimit   = flag.String("memory-limit", "", "soft memory limit of the Go runtime: bytes, or with B, KiB, MiB, GiB or TiB (default $GOMEMLIMIT, else none)")
		metrics    = flag.String("metrics", "", promserve.AddrUsage)
		perTunnel  = flag.Int("metrics-per-tunnel", 0, promserve.PerTunnelUsage+"; a tunnel here is an SA")
		showVer    = flag.Bool("version", false, "print the version and exit")
		release    = flag.Bool("release-quiet", true, "once the SA API's calls stop after a burst (under 4 MiB allocated in a second, after 64 MiB or more and a quarter of the live heap), collect and return the heap's free pages to the OS, rather than keep the GC's headroom (-gogc) until the next burst")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		usage("unexpected argument %q", flag.Arg(0))
	}
	if *showVer {
		fmt.Println(version.Line("spud"))
		return
	}
	mem, err := gomem.Settings(*gogc, *memLimit)
	if err != nil {
		usage("%v", err)
	}
	mem.Apply()
	// The kernel's own words when it refuses an XDP attachment ("Peer MTU
	// too large for XDP"), not a bare EINVAL.
	nl.EnableErrorMessageReporting = true
	if *verbose {
		*logLevel = "debug"
	}
	log, level, err := daemonlog.New(os.Stderr, *logFormat, *logLevel)
	if err != nil {
		usage("%v", err)
	}
	cfg := spud.Config{Interfaces: split(*ifaces), Protected: split(*protected), SPUs: *spus, Queues: *queues,
		MaxSleep: *maxSleep, SpeedPad: *speedPad, FailOpen: *failOpen, Socket: *socket, Logical: *logical, MaxPolicies: *maxPols, KeyFile: *keyFile,
		Log: log, Level: level}
	if cfg.CPUs, err = ints(*cpus); err != nil {
		usage("-cpus: %v", err)
	}
	switch *poll {
	case "adaptive":
		cfg.Poll = xsk.Adaptive
	case "busy":
		cfg.Poll = xsk.Busy
	default:
		usage("-poll %q: want adaptive or busy", *poll)
	}
	switch *xdpMode {
	case "auto":
		cfg.XDPMode = steer.ModeAuto
	case "native":
		cfg.XDPMode = steer.ModeNative
	case "generic":
		cfg.XDPMode = steer.ModeGeneric
	default:
		usage("-xdp %q: want auto, native or generic", *xdpMode)
	}
	switch *xskMode {
	case "auto":
		cfg.XSKMode = xsk.Auto
	case "copy":
		cfg.XSKMode = xsk.Copy
	case "zerocopy":
		cfg.XSKMode = xsk.ZeroCopy
	default:
		usage("-xsk %q: want auto, copy or zerocopy", *xskMode)
	}
	if cfg.Carrier, err = steer.ParseCarrier(*carrier); err != nil {
		usage("-steer-carrier: %v", err)
	}
	if len(cfg.Interfaces) == 0 {
		usage("-i: no interfaces given")
	}
	if *maxPols < 1 || *maxPols > steer.MaxMaxPolicies {
		usage("-max-policies %d: want 1..%d", *maxPols, steer.MaxMaxPolicies)
	}
	if cfg.CipherIdle, err = cipherIdleFlag(*cipherIdle); err != nil {
		usage("%v", err)
	}
	if err := promserve.CheckPerTunnel(*perTunnel); err != nil {
		usage("%v", err)
	}
	if *check {
		checkOnly(cfg)
	}
	daemonlog.Startup(log, "spud", flag.CommandLine)
	log.Info("spud: runtime memory settings", "settings", mem.String())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := promserve.Listen(*metrics)
	if err != nil {
		fail("%v", err)
	}
	d, err := spud.Start(cfg)
	if err != nil {
		fail("%v", err)
	}
	var m *promserve.Server
	if ln != nil {
		m = spudmetrics.Serve(ln, d, *perTunnel, log)
	}
	serving(ctx, log, cfg.Socket)
	if *release {
		go gomem.ReleaseWhenQuiet(ctx, gomem.Quiet{}, func(took time.Duration) {
			log.Debug("spud: heap returned to the OS after a burst", "took", took)
		})
	}
	<-ctx.Done()
	log.Info("spud: stopping")
	stopping(log)
	m.Close() // before the daemon, which a scrape reads
	if err := d.Close(); err != nil {
		fail("stop: %v", err)
	}
	log.Info("spud: stopped")
}

// minCipherIdle is the shortest -cipher-idle but 0: an SA idle for less
// would make its cipher state again, at some 1.2 µs, every few packets of
// a slow flow, for memory it gives back a second later.
const minCipherIdle = time.Second

// cipherIdleFlag is -cipher-idle as spu.Config.CipherIdle takes it: 0
// (never) is its negative, which Config reads as never, where its 0 is
// the default.
func cipherIdleFlag(d time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return -1, nil
	case d < minCipherIdle:
		return 0, fmt.Errorf("-cipher-idle %v: want 0 (never) or at least %v", d, minCipherIdle)
	}
	return d, nil
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range split(s) {
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a CPU number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// usage reports a mistake in the command line: exit status 2, as flag does.
func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "spud: "+format+"\n", args...)
	os.Exit(2)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "spud: "+format+"\n", args...)
	os.Exit(1)
}
