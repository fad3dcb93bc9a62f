// client-rtt for the Go binding: the same measurements as the C client's
// bench/client_rtt.c, in the output format of bench/bindings.sh.
//
//	client-rtt --url ws://127.0.0.1:PORT --token TOKEN --peer USER
//	           [--n 1000] [--window 32] [--msgs 5000]
//
// One Client on an in-memory store opens the direct conversation with
// PEER, then
//  1. sends N messages one after the other, each when the previous one was
//     acked (Send returns at the ack), timing each send -> ack round trip
//     (p50, p99);
//  2. sends MSGS messages keeping WINDOW unacked at all times (WINDOW
//     goroutines, each sending when its previous send was acked), and
//     reports the acked messages per second.
//
// It prints one JSON line:
//
//	{"lang":"go","n":N,"rtt_p50_us":..,"rtt_p99_us":..,"window":W,"msgs":M,"msgs_per_s":..}
//
// The server must allow the rate (chatd --rate-per-minute).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"libchat/chat"
)

func main() {
	url := flag.String("url", "", "server WebSocket URL")
	token := flag.String("token", "", "bearer token")
	peer := flag.String("peer", "", "the other member of the direct conversation")
	n := flag.Int("n", 1000, "sequential sends timed")
	window := flag.Int("window", 32, "sends in flight in the throughput phase")
	msgs := flag.Int("msgs", 5000, "sends in the throughput phase")
	flag.Parse()
	if *url == "" || *token == "" || *peer == "" || *n <= 0 || *window <= 0 || *msgs <= 0 {
		fmt.Fprintln(os.Stderr, "usage: client-rtt --url URL --token TOKEN --peer USER [--n N] [--window W] [--msgs M]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := chat.Dial(ctx, chat.Config{URL: *url, Token: *token})
	if err != nil {
		fail(err)
	}
	defer c.Close()
	go func() { // nobody reads them here: let them go
		for range c.Events() {
		}
	}()
	conv, err := c.CreateConversation(ctx, "", *peer)
	if err != nil {
		fail(err)
	}

	rtt := make([]time.Duration, *n)
	for i := range rtt {
		t0 := time.Now()
		if _, err := c.Send(ctx, conv.ID, fmt.Sprintf("bench-%d", i)); err != nil {
			fail(err)
		}
		rtt[i] = time.Since(t0)
	}
	sort.Slice(rtt, func(i, j int) bool { return rtt[i] < rtt[j] })
	pct := func(p int) float64 {
		i := (len(rtt)*p + 99) / 100
		if i > 0 {
			i--
		}
		return float64(rtt[i].Nanoseconds()) / 1e3
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *window)
	t0 := time.Now()
	for w := 0; w < *window; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(*msgs); i = next.Add(1) {
				if _, err := c.Send(ctx, conv.ID, fmt.Sprintf("bench-w%d", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	close(errs)
	for err := range errs {
		fail(err)
	}
	out, _ := json.Marshal(struct {
		Lang     string  `json:"lang"`
		N        int     `json:"n"`
		P50      float64 `json:"rtt_p50_us"`
		P99      float64 `json:"rtt_p99_us"`
		Window   int     `json:"window"`
		Msgs     int     `json:"msgs"`
		MsgsPerS float64 `json:"msgs_per_s"`
	}{"go", *n, round1(pct(50)), round1(pct(99)), *window, *msgs, float64(int(float64(*msgs) / elapsed.Seconds()))})
	fmt.Println(string(out))
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "client-rtt:", err)
	os.Exit(1)
}
