package chat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// embedded is a Go-embedded server on an httptest server (127.0.0.1).
type embedded struct {
	srv  *Server
	http *httptest.Server
	key  *TokenKey
	t    testing.TB
}

func newEmbedded(t testing.TB, opts ServerOptions) *embedded {
	t.Helper()
	key, err := LoadTokenKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	if opts.Auth == nil {
		opts.Auth = key.Verify
	}
	if opts.StorePath == "" {
		opts.StorePath = filepath.Join(t.TempDir(), "chat.db")
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/chat/v1/", srv)
	mux.Handle("/api/v1/", srv)
	mux.HandleFunc("/app", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "the host app") })
	hs := httptest.NewServer(mux)
	e := &embedded{srv: srv, http: hs, key: key, t: t}
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		key.Close()
	})
	return e
}

func (e *embedded) url() string { return "ws" + strings.TrimPrefix(e.http.URL, "http") }

func (e *embedded) token(user, device string, ttl time.Duration) string {
	tok, err := e.key.Mint(user, device, ttl)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// The Go-embedded server, mounted in a net/http mux next to the host's
// own routes: two Go clients chat with delivered and read receipts, and
// history pages back over REST.
func TestEmbeddedTwoUsers(t *testing.T) {
	t.Parallel()
	e := newEmbedded(t, ServerOptions{RatePerMinute: 100000})
	ctx := ctxT(t)
	alice := dial(t, Config{URL: e.url(), Token: e.token("alice", "phone", time.Hour)})
	bob := dial(t, Config{URL: e.url(), Token: e.token("bob", "laptop", time.Hour)})
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	id, err := alice.Send(ctx, conv.ID, "hello from Go")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, bob, "message", func(m MessageEvent) bool { return m.ID == id && m.Body == "hello from Go" })
	waitFor(t, alice, "delivered", func(r ReceiptEvent) bool { return r.MessageID == id && r.State == ReceiptDelivered })
	if err := bob.MarkRead(ctx, conv.ID, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, alice, "read", func(r ReceiptEvent) bool { return r.MessageID == id && r.State == ReceiptRead })

	// Typing and presence go through too.
	if err := bob.WatchPresence(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, bob, "alice online", func(p PresenceEvent) bool { return p.UserID == "alice" && p.State == Online })
	if err := alice.Typing(ctx, conv.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, bob, "typing", func(ev TypingEvent) bool { return ev.UserID == "alice" && ev.Typing })

	// History: a fresh device of bob pages it over REST.
	for i := 0; i < 30; i++ {
		if _, err := alice.Send(ctx, conv.ID, fmt.Sprintf("h%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	bob2 := dial(t, Config{URL: e.url(), Token: e.token("bob", "tablet", time.Hour)})
	page, err := bob2.History(ctx, conv.ID, 0, 10)
	if err != nil || len(page) != 10 || page[9].Body != "h29" || page[0].Body != "h20" {
		t.Fatalf("newest page: %d %v", len(page), err)
	}
	older, err := bob2.History(ctx, conv.ID, page[0].ID, 10)
	if err != nil || len(older) != 10 || older[9].Body != "h19" {
		t.Fatalf("older page: %d %v", len(older), err)
	}
	convs, err := bob2.Conversations(ctx)
	if err != nil || len(convs) != 1 || convs[0].ID != conv.ID {
		t.Fatalf("conversations: %+v %v", convs, err)
	}

	// The host's own routes are untouched; unknown chat paths are 404.
	for path, want := range map[string]int{"/app": 200, "/chat/v1/other": 404, "/api/v1/conversations": 401} {
		resp, err := http.Get(e.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	st, err := e.srv.Stats(ctx)
	if err != nil || st.SendsCommittedTotal != 31 || st.SessionsOpen != 3 {
		t.Fatalf("stats %+v %v", st, err)
	}
}

// Identity.Expires closes an open session with 4001; the client asks for
// a fresh token (TokenFunc) and recovers.
func TestEmbeddedTokenExpiry(t *testing.T) {
	t.Parallel()
	e := newEmbedded(t, ServerOptions{})
	ctx := ctxT(t)
	bob := dial(t, Config{URL: e.url(), Token: e.token("bob", "laptop", time.Hour)})
	alice := dial(t, Config{URL: e.url(), Token: e.token("alice", "phone", 1500*time.Millisecond),
		TokenFunc: func(ctx context.Context, why AuthReason) (string, error) {
			return e.token("alice", "phone", time.Hour), nil
		}})
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	ar := waitFor(t, alice, "auth required", func(AuthRequiredEvent) bool { return true })
	if ar.Reason != AuthExpired {
		t.Fatalf("reason %v", ar.Reason)
	}
	waitFor(t, alice, "ready again", func(c ConnectionEvent) bool { return c.State == StateReady })
	id, err := alice.Send(ctx, conv.ID, "still here")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, bob, "message", func(m MessageEvent) bool { return m.ID == id })
	st, _ := e.srv.Stats(ctx)
	if st.SessionsExpiredTotal != 1 {
		t.Fatalf("sessions_expired_total %d", st.SessionsExpiredTotal)
	}
}

// Hooks that panic do not crash the process: an Auth panic refuses the
// request, a Push panic is logged, and the server goes on.
func TestEmbeddedPanickingHooks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var pushed []PushNote
	var key *TokenKey
	e := newEmbedded(t, ServerOptions{
		Auth: func(ctx context.Context, tok string) (Identity, error) {
			if tok == "boom" {
				panic("auth hook bug")
			}
			return key.Verify(ctx, tok)
		},
		Push: func(ctx context.Context, n PushNote) error {
			mu.Lock()
			pushed = append(pushed, n)
			first := len(pushed) == 1
			mu.Unlock()
			if first {
				panic("push hook bug")
			}
			return nil
		},
	})
	key = e.key
	ctx := ctxT(t)
	_, err := Dial(ctx, Config{URL: e.url(), Token: "boom"})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Dial with a panicking auth: %v", err)
	}
	alice := dial(t, Config{URL: e.url(), Token: e.token("alice", "phone", time.Hour)})
	// Bob has a push device and is offline.
	bob := dial(t, Config{URL: e.url(), Token: e.token("bob", "laptop", time.Hour)})
	if err := bob.RegisterDevice(ctx, "fcm", "bob-push-token"); err != nil {
		t.Fatal(err)
	}
	bob.Close()
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := alice.Send(ctx, conv.ID, fmt.Sprintf("push %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(T)
	for {
		mu.Lock()
		n := len(pushed)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d push notes", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	p := pushed[1]
	mu.Unlock()
	if p.UserID != "bob" || p.Platform != "fcm" || p.PushToken != "bob-push-token" || p.SenderID != "alice" ||
		strings.Contains(p.Preview, "push 1") {
		t.Fatalf("push note %+v", p)
	}
	if _, err := alice.Send(ctx, conv.ID, "still serving"); err != nil {
		t.Fatal(err)
	}
}

// Mounted under one prefix only (the README's case): the WebSocket at
// /chat/chat/v1/ws and REST at /chat/api/v1/...; a client told both
// works, and http.StripPrefix works the same way.
func TestEmbeddedUnderPrefix(t *testing.T) {
	t.Parallel()
	key, err := LoadTokenKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	srv, err := NewServer(ServerOptions{Auth: key.Verify})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/chat/", srv)
	mux.Handle("/strip/", http.StripPrefix("/strip", srv))
	hs := httptest.NewServer(mux)
	defer hs.Close()
	ctx := ctxT(t)
	for _, prefix := range []string{"/chat", "/strip"} {
		tok := func(u string) string { s, _ := key.Mint(u, "d"+strings.TrimPrefix(prefix, "/"), time.Hour); return s }
		cfg := func(u string) Config {
			return Config{URL: "ws" + strings.TrimPrefix(hs.URL, "http") + prefix + "/chat/v1/ws",
				RESTURL: hs.URL + prefix, Token: tok(u)}
		}
		alice := dial(t, cfg("alice"))
		bob := dial(t, cfg("bob"))
		conv, err := alice.CreateConversation(ctx, "", "bob")
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		id, err := alice.Send(ctx, conv.ID, "under "+prefix)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, bob, "message", func(m MessageEvent) bool { return m.ID == id })
		if page, err := bob.History(ctx, conv.ID, 0, 50); err != nil || len(page) == 0 {
			t.Fatalf("%s: history over REST: %d %v", prefix, len(page), err)
		}
		alice.Close()
		bob.Close()
	}
}

// Shutdown drains: the sends already in flight are acked, sessions are
// closed with 1001, new sessions are refused, and it returns once they
// are gone.
func TestEmbeddedShutdownDrains(t *testing.T) {
	t.Parallel()
	e := newEmbedded(t, ServerOptions{RatePerMinute: 100000})
	ctx := ctxT(t)
	alice := dial(t, Config{URL: e.url(), Token: e.token("alice", "phone", time.Hour)})
	dial(t, Config{URL: e.url(), Token: e.token("bob", "laptop", time.Hour)})
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := alice.Enqueue(ctx, conv.ID, fmt.Sprintf("d%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, alice, "a first ack", func(AckEvent) bool { return true })
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitFor(t, alice, "the drain's close", func(c ConnectionEvent) bool { return c.State == StateBackoff })
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	// Dial waits for a session; the closed server never gives one.
	if _, err := Dial(short, Config{URL: e.url(), Token: e.token("carol", "x", time.Hour),
		BackoffBase: 50 * time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a closed server: %v", err)
	}
}

// A send the server refuses fails Send with a *WireError that errors.Is
// matches by code; bad input fails at once with the C error's detail.
func TestEmbeddedRefusedSend(t *testing.T) {
	t.Parallel()
	e := newEmbedded(t, ServerOptions{})
	ctx := ctxT(t)
	alice := dial(t, Config{URL: e.url(), Token: e.token("alice", "phone", time.Hour)})
	dial(t, Config{URL: e.url(), Token: e.token("bob", "laptop", time.Hour)})
	carol := dial(t, Config{URL: e.url(), Token: e.token("carol", "x", time.Hour)})
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	_, err = carol.Send(ctx, conv.ID, "let me in")
	var we *WireError
	if !errors.As(err, &we) || !(errors.Is(err, WireNotMember) || errors.Is(err, WireNoSuchConversation)) {
		t.Fatalf("Send by a non-member: %v", err)
	}
	_, err = alice.Send(ctx, "not a valid id!", "x")
	var ce *Error
	if !errors.Is(err, ErrInval) || !errors.As(err, &ce) || ce.Op != "chat_client_send" || ce.Detail == "" {
		t.Fatalf("Send to a bad id: %v", err)
	}
	if _, err := alice.CreateConversation(ctx, "", "bob", "carol"); !errors.Is(err, ErrInval) {
		t.Fatalf("a direct chat with two others: %v", err)
	}
	if _, err := NewServer(ServerOptions{MachineID: 5000}); !errors.Is(err, ErrInval) ||
		!strings.Contains(err.Error(), "machine_id") {
		t.Fatalf("NewServer with a bad machine id: %v", err)
	}
}
