// pause is the pod sandbox's init process: it holds the pod's namespaces,
// reaps zombies (it is PID 1 when the pod shares its PID namespace) and exits
// 0 on SIGTERM or SIGINT, as upstream's pause.c does. It is built statically
// and packaged FROM scratch because there is no registry to pull one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
