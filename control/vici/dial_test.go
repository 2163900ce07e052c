package vici_test

import "net"

func netDial(path string) (net.Conn, error) { return net.Dial("unix", path) }
