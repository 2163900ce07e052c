package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a long-running process started in a host. Its stdout and stderr
// go to LogPath.
type Proc struct {
	Name    string
	Host    *Host
	PID     int
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error // from Wait, once done is closed
}

// StartOptions shape Start.
type StartOptions struct {
	Env []string // added to the caller's environment
	Dir string
}

// Start runs argv in the host in the background, in its own process group
// (so that Stop reaches its children too), with output to a log file named
// after the host and name. The lab stops it on Close.
func (h *Host) Start(name string, argv []string, o StartOptions) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("lab: Start: empty command")
	}
	if err := checkHostName(name); err != nil {
		return nil, fmt.Errorf("lab: process name: %w", err)
	}
	l := h.lab
	logPath := filepath.Join(l.LogDir, h.Name+"-"+name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %s on %s: log: %w", name, h.Name, err)
	}
	defer f.Close()
	// `ip netns exec` execs argv after setns, so the PID we get is argv's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = o.Dir
	if len(o.Env) > 0 {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	l.logf("lab %s: [%s] start %s: %s", l.RunID, h.Name, name, strings.Join(argv, " "))
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab: closed")
	}
	if err := cmd.Start(); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: %s on %s: %w", name, h.Name, err)
	}
	p := &Proc{Name: name, Host: h, PID: cmd.Process.Pid, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// State describes the process for a report.
func (p *Proc) State() string {
	exited, err := p.Exited()
	switch {
	case !exited:
		return "running"
	case err == nil:
		return "exited 0"
	default:
		return err.Error()
	}
}

// Log returns what the process has written so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	return string(b)
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	return syscall.Kill(-p.PID, sig)
}

// Stop sends SIGTERM to the process group, waits, then SIGKILLs it. It
// returns an error only if the process outlives SIGKILL; how the process
// exited is left to Exited.
func (p *Proc) Stop() error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	_ = syscall.Kill(-p.PID, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("lab: %s on %s (pid %d) survived SIGKILL", p.Name, p.Host.Name, p.PID)
	}
}

// Wait waits at most d for the process to exit on its own.
func (p *Proc) Wait(d time.Duration) (bool, error) {
	select {
	case <-p.done:
		return p.Exited()
	case <-time.After(d):
		return false, nil
	}
}
