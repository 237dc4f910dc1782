// A Go HTTP server, built static (CGO_ENABLED=0) as container images ship Go programs, for
// test/restore-real-programs.ts. What it leans on is the Go runtime's own: goroutines multiplexed
// over several OS threads, each with its signal stack; the netpoller (epoll); timers; the heap's
// large PROT_NONE reservations; the garbage collector; and async preemption, which interrupts a
// goroutine spinning without calls by sending its thread SIGURG.
//
//	server PORT        listens on 127.0.0.1:PORT
//	GET /ticks         ticks so far (a goroutine ticks every 10 ms)
//	GET /parked        checks the 100 goroutines parked since start-up, each with a 64 KiB buffer
//	GET /spin          spins on every P for 300 ms; answers with the ticks that came meanwhile
//	GET /gc            runs the collector; answers with the number of collections
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

var ticks atomic.Int64

type parkedGoroutine struct {
	ask    chan struct{}
	answer chan bool
}

func park(i int) parkedGoroutine {
	p := parkedGoroutine{make(chan struct{}), make(chan bool)}
	go func() {
		buf := make([]byte, 64<<10)
		for j := range buf {
			buf[j] = byte(i + j)
		}
		for range p.ask {
			ok := true
			for j := range buf {
				ok = ok && buf[j] == byte(i+j)
			}
			p.answer <- ok
		}
	}()
	return p
}

// spin keeps every P busy in loops without calls for d: only async preemption lets the ticker run.
func spin(d time.Duration) int64 {
	before := ticks.Load()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for !stop.Load() {
				n++
			}
			_ = n
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return ticks.Load() - before
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		for range time.Tick(10 * time.Millisecond) {
			ticks.Add(1)
		}
	}()
	parked := make([]parkedGoroutine, 100)
	for i := range parked {
		parked[i] = park(i)
	}
	var mu sync.Mutex
	http.HandleFunc("/ticks", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ticks %d\n", ticks.Load())
	})
	http.HandleFunc("/parked", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		good := 0
		for _, p := range parked {
			p.ask <- struct{}{}
			if <-p.answer {
				good++
			}
		}
		fmt.Fprintf(w, "parked %d of %d intact\n", good, len(parked))
	})
	http.HandleFunc("/spin", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ticks while spinning %d\n", spin(300*time.Millisecond))
	})
	http.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Fprintf(w, "collections %d\n", m.NumGC)
	})
	fmt.Fprintln(os.Stderr, http.Serve(ln, nil))
	os.Exit(1)
}
