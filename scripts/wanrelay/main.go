// Command wanrelay makes a host on this machine look far away: it accepts TCP
// connections on -listen and relays each to -to through a delay line in each
// direction (and, with -rate, a bandwidth limit), since this machine's kernel
// has no netem to do it. Used by `scripts/sandbox.sh wan`.
//
//	wanrelay -listen 127.0.0.1:2222 -to 127.0.0.1:2223 -delay 50ms -rate 12500000
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"time"
)

func main() {
	listen := flag.String("listen", "", "address to accept on (loopback)")
	to := flag.String("to", "", "address to relay to")
	delay := flag.Duration("delay", 50*time.Millisecond, "one-way delay: a round trip costs twice this")
	rate := flag.Int("rate", 0, "bytes per second each way; 0 for no limit")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go relay(c, *to, *delay, *rate)
	}
}

func relay(c net.Conn, to string, delay time.Duration, rate int) {
	defer c.Close()
	up, err := net.Dial("tcp", to)
	if err != nil {
		log.Print(err)
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { line(up, c, delay, rate); done <- struct{}{} }()
	go func() { line(c, up, delay, rate); done <- struct{}{} }()
	<-done
	<-done
}

type chunk struct {
	data []byte
	due  time.Time
}

// line copies src to dst, each chunk leaving delay after it arrived, in order.
func line(dst, src net.Conn, delay time.Duration, rate int) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range q {
		time.Sleep(time.Until(ch.due))
		if rate > 0 {
			time.Sleep(time.Duration(len(ch.data)) * time.Second / time.Duration(rate))
		}
		if _, err := dst.Write(ch.data); err != nil {
			io.Copy(io.Discard, src)
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
