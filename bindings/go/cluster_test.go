package chat

import (
	"context"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// memCluster is a presence registry and bus in Go shared by several
// embedded servers: what a Redis-backed deployment would do, with Locate
// and GetState answering later from goroutines (so every one goes through
// CHAT_PENDING, chat_op_post and env.wake).
type memCluster struct {
	mu      sync.Mutex
	devices map[string]map[string]string // user -> device -> gateway
	states  map[string][2]int64          // user -> state, last active
	servers map[string]*Server           // gateway -> server
}

func (m *memCluster) DeviceOnline(u, d, gw string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.devices[u] == nil {
		m.devices[u] = map[string]string{}
	}
	m.devices[u][d] = gw
}

func (m *memCluster) DeviceOffline(u, d, gw string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.devices[u][d] == gw {
		delete(m.devices[u], d)
	}
}

func jitter() { time.Sleep(time.Duration(rand.Intn(3000)) * time.Microsecond) }

func (m *memCluster) Locate(ctx context.Context, u string) ([]Location, error) {
	jitter()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Location
	for d, gw := range m.devices[u] {
		out = append(out, Location{GatewayID: gw, DeviceID: d})
	}
	return out, nil
}

func (m *memCluster) SetState(u string, st PresenceState, last int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[u] = [2]int64{int64(st), last}
}

func (m *memCluster) GetState(ctx context.Context, u string) (PresenceState, int64, error) {
	jitter()
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.states[u]
	if !ok {
		return Offline, 0, ErrNotFound
	}
	return PresenceState(s[0]), s[1], nil
}

// Publish must not block: deliver on a goroutine.
func (m *memCluster) Publish(gw string, msg []byte) error {
	m.mu.Lock()
	s := m.servers[gw]
	m.mu.Unlock()
	b := append([]byte(nil), msg...)
	go s.BusDeliver(b)
	return nil
}

// Two Go-embedded gateways over one SQLite file, joined by a Go presence
// hook that answers asynchronously and a Go bus: alice on one, bob on the
// other, chat with receipts and presence.
func TestClusterAsyncPresenceAndBus(t *testing.T) {
	t.Parallel()
	key, err := LoadTokenKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	m := &memCluster{devices: map[string]map[string]string{}, states: map[string][2]int64{}, servers: map[string]*Server{}}
	db := filepath.Join(t.TempDir(), "chat.db")
	urls := map[string]string{}
	for i, gw := range []string{"gw1", "gw2"} {
		srv, err := NewServer(ServerOptions{StorePath: db, Auth: key.Verify, Presence: m, Bus: m,
			MachineID: uint32(i + 1), GatewayID: gw, RatePerMinute: 100000})
		if err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		m.servers[gw] = srv
		m.mu.Unlock()
		mux := http.NewServeMux()
		srv.Mount(mux)
		hs := httptest.NewServer(mux)
		urls[gw] = "ws" + strings.TrimPrefix(hs.URL, "http")
		t.Cleanup(func() { srv.Close(); hs.Close() })
	}
	mint := func(u, d string) string {
		tok, err := key.Mint(u, d, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := ctxT(t)
	alice := dial(t, Config{URL: urls["gw1"], Token: mint("alice", "phone")})
	bob := dial(t, Config{URL: urls["gw2"], Token: mint("bob", "laptop")})
	conv, err := alice.CreateConversation(ctx, "", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		id, err := alice.Send(ctx, conv.ID, "across gateways")
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, bob, "message via the bus", func(e MessageEvent) bool { return e.ID == id })
	}
	id, err := bob.Send(ctx, conv.ID, "and back")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, alice, "reply via the bus", func(e MessageEvent) bool { return e.ID == id })
	if err := alice.MarkRead(ctx, conv.ID, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, bob, "read receipt via the bus", func(e ReceiptEvent) bool { return e.MessageID == id && e.State == ReceiptRead })
	if err := bob.WatchPresence(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, bob, "alice's presence from the registry", func(e PresenceEvent) bool { return e.UserID == "alice" && e.State == Online })
	st, err := m.servers["gw1"].Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.OpsPendingTotal == 0 || st.BusPublishedTotal == 0 {
		t.Fatalf("the asynchronous path was not taken: %+v", st)
	}
	t.Logf("gw1: %d module calls answered later, %d bus messages", st.OpsPendingTotal, st.BusPublishedTotal)
}
