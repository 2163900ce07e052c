package daemons

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/testbed/lab"
)

// Iked is an iked running on a lab host next to its spud.
type Iked struct {
	Host *lab.Host
	Spud *Spud
	Proc *lab.Proc
	// Dir holds the configuration and the secrets; the state is in
	// StateDir (on tmpfs where /dev/shm is one).
	Dir    string
	Config string
	Socket string
	// VICI is iked's VICI socket (swanctl --uri unix://VICI).
	VICI     string
	StateDir string
	Client   *ikectl.Client
	opts     IkedOptions
	bin      string
	starts   int
}

// IkedOptions shape StartIked.
type IkedOptions struct {
	// Config is iked's YAML configuration without the spud, control and
	// secrets keys, which StartIked fills in.
	Config string
	// Secrets is the secrets file's YAML.
	Secrets string
	// Args are more flags (e.g. -log-level debug, -grace 2s).
	Args []string
	// Swanctl, when set, is a swanctl.conf (its connections and secrets
	// sections) that iked reads in place of Config and Secrets; StartIked
	// adds an iked section with the spud and control sockets.
	Swanctl string
}

// StartIked writes the configuration and starts iked on the host of s,
// connected to s, and waits until its control socket answers.
func StartIked(s *Spud, o IkedOptions) (*Iked, error) {
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(bin, "iked")); err != nil {
		return nil, fmt.Errorf("gateway: iked binary: %w", err)
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("spugate-%s-iked", s.Host.NS))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// iked saves an IKE SA's state at every change, a file rename each
	// time: its default folder is on tmpfs (/run), so the lab's is too
	// where the machine has /dev/shm, or every save costs an inode of the
	// disk's filesystem (most of an initiator's CPU in the IKE benchmark).
	state := filepath.Join(dir, "state")
	if onTmpfs("/dev/shm") {
		state = filepath.Join("/dev/shm", fmt.Sprintf("spugate-%s-iked.state", s.Host.NS))
	}
	k := &Iked{Host: s.Host, Spud: s, Dir: dir, Config: filepath.Join(dir, "iked.yaml"),
		Socket: filepath.Join(dir, "iked.sock"), VICI: filepath.Join(dir, "vici.sock"), StateDir: state, opts: o, bin: bin}
	if o.Swanctl != "" {
		k.Config = filepath.Join(dir, "swanctl.conf")
		head := fmt.Sprintf("iked {\n  spud = %s\n  control = %s\n}\n", s.Socket, k.Socket)
		if err := os.WriteFile(k.Config, []byte(head+o.Swanctl), 0o600); err != nil {
			return nil, err
		}
	} else if err := k.WriteConfig(o.Config, o.Secrets); err != nil {
		return nil, err
	}
	return k, k.start()
}

// WriteConfig replaces the configuration files (for a reload).
func (k *Iked) WriteConfig(config, secrets string) error {
	if err := os.WriteFile(filepath.Join(k.Dir, "secrets.yaml"), []byte(secrets), 0o600); err != nil {
		return err
	}
	head := fmt.Sprintf("spud: %s\ncontrol: %s\nsecrets: secrets.yaml\n", k.Spud.Socket, k.Socket)
	k.opts.Config, k.opts.Secrets = config, secrets
	return os.WriteFile(k.Config, []byte(head+config), 0o600)
}

func (k *Iked) start() error {
	k.starts++
	// Each lab iked serves VICI in its own folder: the default socket is
	// one per machine.
	argv := append([]string{filepath.Join(k.bin, "iked"), "-config", k.Config, "-state", k.StateDir, "-vici", k.VICI}, k.opts.Args...)
	p, err := k.Host.Start(fmt.Sprintf("iked%d", k.starts), argv, lab.StartOptions{})
	if err != nil {
		return err
	}
	k.Proc = p
	deadline := time.Now().Add(15 * time.Second)
	for {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("gateway: iked on %s exited: %v\n%s", k.Host.Name, err, p.Log())
		}
		c, err := ikectl.Dial(k.Socket)
		if err == nil {
			if _, err = c.Hello(); err == nil {
				k.Client = c
				return nil
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("gateway: iked on %s: no answer on %s: %v\n%s", k.Host.Name, k.Socket, err, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Spuctl runs spuctl against this iked and its spud, in its host.
func (k *Iked) Spuctl(args ...string) (string, error) {
	out, err := k.Host.Exec(filepath.Join(k.bin, "spuctl"), append([]string{"-s", k.Spud.Socket, "-c", k.Socket}, args...)...)
	return string(out), err
}

// Kill kills iked with SIGKILL (a crash: nothing is cleaned up).
func (k *Iked) Kill() error {
	if k.Client != nil {
		k.Client.Close()
		k.Client = nil
	}
	if err := k.Proc.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if ok, _ := k.Proc.Wait(5 * time.Second); !ok {
		return fmt.Errorf("gateway: iked on %s survived SIGKILL", k.Host.Name)
	}
	return nil
}

// Restart starts iked again with the same configuration and state.
func (k *Iked) Restart() error { return k.start() }

// Stop stops iked (SIGTERM, then SIGKILL).
func (k *Iked) Stop() error {
	if k.Client != nil {
		k.Client.Close()
		k.Client = nil
	}
	return k.Proc.Stop()
}

// Log returns what every iked started here logged, the current one last.
func (k *Iked) Log() string {
	var b strings.Builder
	b.WriteString(k.Proc.Log())
	return b.String()
}

// Cleanup removes the configuration and state folder.
func (k *Iked) Cleanup() {
	os.RemoveAll(k.Dir)
	os.RemoveAll(k.StateDir)
}

// onTmpfs reports whether dir is a tmpfs mount.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}
