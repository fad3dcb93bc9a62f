package chat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// traffic sends from n goroutines until stop; it returns how many sends
// were acked and the first error other than the ones Close may cause.
func traffic(c *Client, conv string, n int, stop chan struct{}) (*sync.WaitGroup, *int64, chan error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := new(int64)
	errs := make(chan error, n)
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), T)
				_, err := c.Send(ctx, conv, fmt.Sprintf("t%d-%d", g, i))
				cancel()
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				*acked++
				mu.Unlock()
			}
		}(g)
	}
	return &wg, acked, errs
}

// The two leak tests are not parallel: they run before the parallel
// tests resume, so no other test's goroutines come and go meanwhile.

// Close during traffic: the senders return (acked or ErrClosed), and
// every goroutine the client started is gone.
func TestClientCloseDuringTraffic(t *testing.T) {
	d := newChatd(t, "--rate-per-minute", "100000")
	bob := dial(t, Config{URL: d.url(), Token: d.token("bob", "laptop", 3600)})
	_ = bob
	ignore := goleak.IgnoreCurrent()
	ctx := ctxT(t)
	alice, err := Dial(ctx, Config{URL: d.url(), Token: d.token("alice", "phone", 3600)})
	if err != nil {
		t.Fatal(err)
	}
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg, acked, errs := traffic(alice, conv.ID, 8, stop)
	go func() { // an app reading events while it closes
		for range alice.Events() {
		}
	}()
	time.Sleep(300 * time.Millisecond)
	alice.Close()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a send failed otherwise than with ErrClosed: %v", err)
	}
	if *acked == 0 {
		t.Fatal("no traffic before Close; the test proves nothing")
	}
	if _, err := alice.Send(ctx, conv.ID, "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	alice.Close() // twice is fine
	goleak.VerifyNone(t, ignore)
}

// Close of the embedded server during traffic: connections are cut,
// handlers return, the C server is freed, nothing is left running.
func TestServerCloseDuringTraffic(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	e := newEmbedded(t, ServerOptions{RatePerMinute: 100000})
	ctx := ctxT(t)
	alice, err := Dial(ctx, Config{URL: e.url(), Token: e.token("alice", "phone", time.Hour),
		BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := Dial(ctx, Config{URL: e.url(), Token: e.token("bob", "laptop", time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg, acked, errs := traffic(alice, conv.ID, 4, stop)
	time.Sleep(300 * time.Millisecond)
	e.srv.Close()
	e.http.Close()
	// The clients keep their sends in the outbox and retry; stop them.
	alice.Close()
	bob.Close()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a send failed: %v", err)
	}
	if *acked == 0 {
		t.Fatal("no traffic before Close")
	}
	e.key.Close()
	goleak.VerifyNone(t, ignore)
}
