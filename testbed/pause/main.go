// The sandbox ("pause") program of the test bed's real nodes: the first process of every pod,
// which holds the pod's namespaces and does nothing else. The kubelet's container runtime starts
// it from the image the test bed builds around this one static binary; SIGTERM or SIGINT ends it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
