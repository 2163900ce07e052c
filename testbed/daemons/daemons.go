// Package daemons runs spugate's daemons (spud and iked) on
// the hosts of a lab, for the privileged tests, the demo and the
// benchmarks: it finds or builds the binaries, starts each daemon by PID
// through the lab (so its log lands in the lab's failure report), waits
// until it answers, and hands back an SA API client.
package daemons

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/testbed/lab"
)

// BinEnv names a directory holding prebuilt binaries (make test sets it to
// bin/); without it the binaries are built once per process.
const BinEnv = "SPUGATE_BIN"

// CarrierEnv, when set, is the -steer-carrier of every spud the harness
// starts without one of its own (SpudOptions.Carrier): `make test
// SPUGATE_STEER_CARRIER=shim` runs every lab test on that carrier.
const CarrierEnv = "SPUGATE_STEER_CARRIER"

var build struct {
	once sync.Once
	dir  string
	err  error
}

// Binaries returns the directory with spud, iked and spuctl, building them
// if needed.
func Binaries() (string, error) {
	if d := os.Getenv(BinEnv); d != "" {
		for _, b := range []string{"spud", "spuctl"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				return "", fmt.Errorf("gateway: %s=%s: %w", BinEnv, d, err)
			}
		}
		return d, nil
	}
	build.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "spugate-bin-")
		if err != nil {
			build.err = err
			return
		}
		pkgs := []string{"./cmd/spud", "./cmd/spuctl", "./cmd/iked"}
		cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("gateway: go build: %v\n%s", err, out)
			return
		}
		build.dir = dir
	})
	return build.dir, build.err
}

func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("gateway: cannot find the module root")
	}
	// testbed/daemons/daemons.go -> root
	return filepath.Dir(filepath.Dir(filepath.Dir(file))), nil
}

// Spud is a spud running on a lab host.
type Spud struct {
	Host   *lab.Host
	Proc   *lab.Proc
	Socket string
	Client *api.Client
	bin    string
}

// SpudOptions shape StartSpud.
type SpudOptions struct {
	Interfaces []string // default wan0,lan0
	Protected  []string // default lan0
	SPUs       int
	// Carrier is spud's -steer-carrier (auto, meta, shim, none); empty:
	// $SPUGATE_STEER_CARRIER, else auto.
	Carrier string
	Args    []string // more flags
}

// StartSpud starts spud on h and connects to its SA API.
func StartSpud(h *lab.Host, o SpudOptions) (*Spud, error) {
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	if len(o.Interfaces) == 0 {
		o.Interfaces = []string{"wan0", "lan0"}
	}
	if o.Protected == nil {
		o.Protected = []string{"lan0"}
	}
	sock := filepath.Join(os.TempDir(), fmt.Sprintf("spugate-%s.sock", h.NS))
	keyFile := filepath.Join(os.TempDir(), fmt.Sprintf("spugate-%s.key", h.NS))
	argv := []string{filepath.Join(bin, "spud"), "-i", strings.Join(o.Interfaces, ","), "-protected", strings.Join(o.Protected, ","),
		"-socket", sock, "-key-file", keyFile}
	if o.SPUs > 0 {
		argv = append(argv, "-spus", fmt.Sprint(o.SPUs))
	}
	if o.Carrier == "" {
		o.Carrier = os.Getenv(CarrierEnv)
	}
	if o.Carrier != "" {
		argv = append(argv, "-steer-carrier", o.Carrier)
	}
	argv = append(argv, o.Args...)
	p, err := h.Start("spud", argv, lab.StartOptions{})
	if err != nil {
		return nil, err
	}
	s := &Spud{Host: h, Proc: p, Socket: sock, bin: bin}
	if err := s.connect(10 * time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("gateway: spud on %s: %w\n%s", h.Name, err, p.Log())
	}
	return s, nil
}

func (s *Spud) connect(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if exited, err := s.Proc.Exited(); exited {
			return fmt.Errorf("exited: %v", err)
		}
		c, err := api.Dial(s.Socket)
		if err == nil {
			if _, err = c.Hello("gateway harness"); err == nil {
				s.Client = c
				return nil
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within %v: %v", s.Socket, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Spuctl runs spuctl against this spud, in its host.
func (s *Spud) Spuctl(args ...string) (string, error) {
	out, err := s.Host.Exec(filepath.Join(s.bin, "spuctl"), append([]string{"-s", s.Socket}, args...)...)
	return string(out), err
}

// Stop stops spud (SIGTERM, then SIGKILL) and closes the client.
func (s *Spud) Stop() error {
	if s.Client != nil {
		s.Client.Close()
		s.Client = nil
	}
	return s.Proc.Stop()
}
