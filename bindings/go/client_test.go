package chat

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Two users chat: the message arrives, and the sender sees it delivered
// and then read.
func TestChatdTwoUsersReceipts(t *testing.T) {
	t.Parallel()
	d := newChatd(t)
	dir := t.TempDir()
	alice := dial(t, Config{URL: d.url(), Token: d.token("alice", "phone", 3600), StorePath: filepath.Join(dir, "alice.db")})
	bob := dial(t, Config{URL: d.url(), Token: d.token("bob", "laptop", 3600), StorePath: filepath.Join(dir, "bob.db")})
	ctx := ctxT(t)

	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if conv.Type != Direct || len(conv.Members) != 2 {
		t.Fatalf("conversation %+v", conv)
	}
	id, err := alice.Send(ctx, conv.ID, "hi bob")
	if err != nil || id == 0 {
		t.Fatalf("Send: %d %v", id, err)
	}
	m := waitFor(t, bob, "bob's message", func(e MessageEvent) bool { return e.ID == id })
	if m.Body != "hi bob" || m.SenderID != "alice" || m.ConversationID != conv.ID {
		t.Fatalf("message %+v", m)
	}
	waitFor(t, alice, "delivered receipt", func(e ReceiptEvent) bool {
		return e.MessageID == id && e.State == ReceiptDelivered && e.MemberID == "bob"
	})
	if err := bob.MarkRead(ctx, conv.ID, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, alice, "read receipt", func(e ReceiptEvent) bool {
		return e.MessageID == id && e.State == ReceiptRead && e.MemberID == "bob"
	})
	msgs, err := alice.Messages(ctx, conv.ID, 0, 10)
	if err != nil || len(msgs) != 1 || !msgs[0].Own || msgs[0].State != ReceiptRead {
		t.Fatalf("stored: %+v %v", msgs, err)
	}
}

// Sends written to the outbox survive both a chatd that is killed
// (SIGKILL) in the middle of them and a client that is closed and opened
// again over the same store: every message arrives once, none twice.
func TestChatdOutboxSurvivesRestart(t *testing.T) {
	t.Parallel()
	d := newChatd(t, "--rate-per-minute", "100000")
	dir := t.TempDir()
	ctx := ctxT(t)
	aliceCfg := Config{URL: d.url(), Token: d.token("alice", "phone", 3600), StorePath: filepath.Join(dir, "alice.db"),
		BackoffBase: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond}
	alice := dial(t, aliceCfg)
	bob := dial(t, Config{URL: d.url(), Token: d.token("bob", "laptop", 3600), StorePath: filepath.Join(dir, "bob.db")})
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	// Bob has the conversation going (a device with nothing stored for a
	// conversation resumes it only from REST paging, on demand).
	first, err := alice.Send(ctx, conv.ID, "first")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, bob, "the first message", func(e MessageEvent) bool { return e.ID == first })
	const n = 300
	enqueue := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := alice.Enqueue(ctx, conv.ID, fmt.Sprintf("m%03d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	enqueue(0, n/2)
	// Kill chatd once some are acked and some are not.
	waitFor(t, alice, "a first ack", func(AckEvent) bool { return true })
	d.stop(syscall.SIGKILL)
	left, _ := alice.OutboxLen(ctx)
	if left == 0 {
		t.Fatalf("every send was acked before the kill; the test proves nothing")
	}
	enqueue(n/2, n) // offline: into the outbox
	alice.Close()   // the outbox is in alice.db
	d.start(fmt.Sprintf("127.0.0.1:%d", d.port))
	alice = dial(t, aliceCfg)
	deadline := time.Now().Add(T)
	for {
		left, err := alice.OutboxLen(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sends still in the outbox", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Bob (who reconnected and resumed by himself) has each message once,
	// and so has the server.
	seen := map[string]int{}
	for len(seen) < n {
		e := waitFor(t, bob, fmt.Sprintf("bob's messages (%d of %d so far)", len(seen), n), func(MessageEvent) bool { return true })
		seen[e.Body]++
		if seen[e.Body] > 1 {
			t.Fatalf("%q arrived twice", e.Body)
		}
	}
	msgs, err := bob.Messages(ctx, conv.ID, 0, 1000)
	if err != nil || len(msgs) != n+1 {
		t.Fatalf("bob's store: %d messages, %v", len(msgs), err)
	}
	for i, m := range msgs[1:] {
		if m.Body != fmt.Sprintf("m%03d", i) {
			t.Fatalf("message %d is %q: order broken", i, m.Body)
		}
	}
}

// A device that was away catches up when it comes back: a short gap
// through resume, a long one (over resume-max-messages) through REST
// paging; either way the store ends up complete and in order.
func TestChatdResumeFillsGap(t *testing.T) {
	t.Parallel()
	d := newChatd(t, "--rate-per-minute", "100000", "--resume-max-messages", "5")
	dir := t.TempDir()
	ctx := ctxT(t)
	alice := dial(t, Config{URL: d.url(), Token: d.token("alice", "phone", 3600), StorePath: filepath.Join(dir, "alice.db")})
	bobCfg := Config{URL: d.url(), Token: d.token("bob", "laptop", 3600), StorePath: filepath.Join(dir, "bob.db")}
	bob := dial(t, bobCfg)
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	first, err := alice.Send(ctx, conv.ID, "before")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, bob, "first message", func(e MessageEvent) bool { return e.ID == first })

	for round, gap := range []int{3, 12} {
		bob.Close()
		var last uint64
		for i := 0; i < gap; i++ {
			if last, err = alice.Send(ctx, conv.ID, fmt.Sprintf("r%d-%02d", round, i)); err != nil {
				t.Fatal(err)
			}
		}
		bob = dial(t, bobCfg)
		want := OriginResume
		if gap > 5 {
			want = OriginREST
		}
		got := 0
		for got < gap {
			e := waitFor(t, bob, "gap messages", func(MessageEvent) bool { return true })
			if e.Origin != want {
				t.Fatalf("round %d: origin %v, want %v", round, e.Origin, want)
			}
			got++
		}
		waitFor(t, bob, "caught up", func(e ResumeEvent) bool { return e.Complete })
		msgs, err := bob.Messages(ctx, conv.ID, 0, 100)
		if err != nil || msgs[len(msgs)-1].ID != last {
			t.Fatalf("round %d: bob's store ends at %+v, want %d (%v)", round, msgs[len(msgs)-1], last, err)
		}
		for i := 1; i < len(msgs); i++ {
			if msgs[i].ID <= msgs[i-1].ID {
				t.Fatalf("store out of order at %d", i)
			}
		}
	}
}

// A token that expires on an open session (close 4001) makes the client
// ask for a fresh one; with it the client reconnects, resumes and sends.
// A TokenFunc that panics does not take the process down.
func TestChatdTokenExpiry(t *testing.T) {
	t.Parallel()
	d := newChatd(t)
	ctx := ctxT(t)
	bob := dial(t, Config{URL: d.url(), Token: d.token("bob", "laptop", 3600)})
	var calls atomic.Int32
	alice := dial(t, Config{URL: d.url(), Token: d.token("alice", "phone", 2),
		TokenFunc: func(ctx context.Context, why AuthReason) (string, error) {
			if calls.Add(1) == 1 {
				panic("the app's login broke")
			}
			return d.token("alice", "phone", 3600), nil
		}})
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	ar := waitFor(t, alice, "auth required", func(AuthRequiredEvent) bool { return true })
	if ar.Reason != AuthExpired {
		t.Fatalf("reason %v", ar.Reason)
	}
	waitFor(t, alice, "the TokenFunc panic reported", func(e ErrorEvent) bool {
		return e.Err != nil && strings.Contains(e.Err.Error(), "panicked")
	})
	if st, _ := alice.State(ctx); st != StateUnauthorized {
		t.Fatalf("state %v after a failed refresh", st)
	}
	// Meanwhile sends wait in the outbox.
	if _, err := alice.Enqueue(ctx, conv.ID, "queued while unauthorized"); err != nil {
		t.Fatal(err)
	}
	// The app answers by hand this time (TokenFunc runs again on the next
	// refusal only).
	if err := alice.SetToken(ctx, d.token("alice", "phone", 3600)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, alice, "ready again", func(e ConnectionEvent) bool { return e.State == StateReady })
	waitFor(t, bob, "the queued message", func(e MessageEvent) bool { return e.Body == "queued while unauthorized" })
	if _, err := alice.Send(ctx, conv.ID, "after"); err != nil {
		t.Fatal(err)
	}
}

// A refused token fails Dial with an error matching ErrAuth.
func TestChatdRefusedToken(t *testing.T) {
	t.Parallel()
	d := newChatd(t)
	_, err := Dial(ctxT(t), Config{URL: d.url(), Token: "not-a-token"})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Dial: %v, want ErrAuth", err)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Name != "CHAT_ERR_AUTH" {
		t.Fatalf("error %#v", err)
	}
	// With a TokenFunc, Dial waits for the fresh token instead.
	c := dial(t, Config{URL: d.url(), Token: "not-a-token",
		TokenFunc: func(context.Context, AuthReason) (string, error) { return d.token("alice", "phone", 3600), nil }})
	if st, _ := c.State(ctxT(t)); st != StateReady {
		t.Fatalf("state %v", st)
	}
}

// 1,000 sends from 10 goroutines: every one acked, exactly once, with
// distinct ids, and the store agrees.
func TestChatdConcurrentSends(t *testing.T) {
	t.Parallel()
	d := newChatd(t, "--rate-per-minute", "100000")
	ctx := ctxT(t)
	alice := dial(t, Config{URL: d.url(), Token: d.token("alice", "phone", 3600)})
	dial(t, Config{URL: d.url(), Token: d.token("bob", "laptop", 3600)})
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ids := map[uint64]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				id, err := alice.Send(ctx, conv.ID, fmt.Sprintf("g%d-%d", g, i))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				dup := ids[id]
				ids[id] = true
				mu.Unlock()
				if dup {
					errs <- fmt.Errorf("id %d acked twice", id)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(ids) != 1000 {
		t.Fatalf("%d distinct ids", len(ids))
	}
	acks := 0
	for acks < 1000 {
		waitFor(t, alice, "acks", func(AckEvent) bool { return true })
		acks++
	}
	msgs, err := alice.Messages(ctx, conv.ID, 0, 2000)
	if err != nil || len(msgs) != 1000 {
		t.Fatalf("store: %d, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if m.Pending || !ids[m.ID] {
			t.Fatalf("stored %+v", m)
		}
	}
}
