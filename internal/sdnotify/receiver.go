package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Receiver is the systemd side of the protocol: a unixgram socket to set
// as a daemon's NOTIFY_SOCKET and read its messages from, for the tests
// that start a daemon as systemd would.
type Receiver struct {
	c    *net.UnixConn
	path string
}

// Listen opens a Receiver at path (a file that must not exist).
func Listen(path string) (*Receiver, error) {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("sd_notify receiver: %w", err)
	}
	return &Receiver{c: c, path: path}, nil
}

// Path is the socket's path, NOTIFY_SOCKET's value.
func (r *Receiver) Path() string { return r.path }

// Receive returns the next message's lines, waiting up to timeout.
func (r *Receiver) Receive(timeout time.Duration) ([]string, error) {
	buf := make([]byte, 4096)
	if err := r.c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	n, err := r.c.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("sd_notify receiver: %w", err)
	}
	return strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n"), nil
}

// Close closes the socket and removes its file.
func (r *Receiver) Close() error {
	err := r.c.Close()
	os.Remove(r.path)
	return err
}
