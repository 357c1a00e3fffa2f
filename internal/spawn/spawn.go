// Package spawn starts real servers (redis-server, clickhouse-server) as
// child processes on free loopback ports, each in a directory of its own,
// and stops them again. The load command uses it to measure the pipeline
// against real backends; the test kit (internal/testsvc) wraps it so a test
// owns its servers. It imports no testing code, so the shipped binary can
// use it.
package spawn

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// Addr is "127.0.0.1:port".
func Addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// handed are the ports FreePorts has returned in this process. The kernel
// may give a port just closed to the next ask for port 0, so two callers a
// moment apart (a broker and an API of one test) could otherwise be handed
// the same port; remembering them costs a few bytes a port.
var handed struct {
	sync.Mutex
	ports map[int]bool
}

// FreePorts returns n distinct TCP ports free on 127.0.0.1 at the time of
// the call, none of which this process was handed before.
func FreePorts(n int) ([]int, error) {
	// Hold every listener until all are chosen so the ports differ.
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	handed.Lock()
	defer handed.Unlock()
	if handed.ports == nil {
		handed.ports = map[int]bool{}
	}
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		p := ln.Addr().(*net.TCPAddr).Port
		if handed.ports[p] {
			continue // held open until the end, so the next ask gets another
		}
		handed.ports[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}
