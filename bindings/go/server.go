package chat

/*
#include "glue.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/cgo"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coder/websocket"
)

// Identity is who a token belongs to: one user and one device.
type Identity struct {
	UserID   string
	DeviceID string
	// Expires, when set, closes an open session with 4001 token_expired
	// once it passes (the client then asks its app for a fresh token).
	Expires time.Time
	Bot     bool // a bot's messages are marked as such (section 8)
}

// PushNote is a message for a member none of whose devices is online
// (PROTOCOL.md section 4.11). Preview names the sender, never the body.
type PushNote struct {
	UserID, DeviceID, Platform, PushToken string
	ConversationID, SenderID              string
	MessageID                             uint64
	Preview                               string
}

// Location is one connected device of a user, on a gateway.
type Location struct{ GatewayID, DeviceID string }

// PresenceHook shares presence between several servers (gateways): where
// each user's devices are connected and each user's state. Locate and
// GetState may take their time (a Redis round trip): they run on their
// own goroutine and their answer reaches the server through libchat's
// asynchronous completion (chat_op_post); the server goes on meanwhile.
// DeviceOnline, DeviceOffline and SetState run on the server's goroutine
// and must not block (queue the work). Close waits for Locate and
// GetState calls in progress: they must return once ctx is done.
type PresenceHook interface {
	DeviceOnline(userID, deviceID, gatewayID string)
	DeviceOffline(userID, deviceID, gatewayID string)
	Locate(ctx context.Context, userID string) ([]Location, error)
	SetState(userID string, state PresenceState, lastActiveMS int64)
	// GetState answers an error matching ErrNotFound for a user never
	// seen.
	GetState(ctx context.Context, userID string) (PresenceState, int64, error)
}

// BusHook carries messages to other gateways; the receiving side hands
// each to its Server.BusDeliver. Publish runs on the server's goroutine
// and must not block; a lost message is recovered by clients' resume.
type BusHook interface {
	Publish(gatewayID string, msg []byte) error
}

// SyncMode says how hard a commit waits for the disk.
type SyncMode int

const (
	// SyncFull fsyncs every group commit: an acked message survives power
	// loss (the default).
	SyncFull SyncMode = iota
	// SyncNormal survives a crash of the process, not of the machine.
	SyncNormal
)

// ServerOptions configure NewServer. Zero values take libchat's defaults.
type ServerOptions struct {
	// StorePath is the SQLite database ("" or ":memory:": in memory).
	StorePath string
	Sync      SyncMode
	// Auth turns a bearer token into an identity. It runs on the HTTP
	// request's goroutine (ctx is the request's), before anything reaches
	// the server, so it may take its time: check the host app's own
	// sessions, call a service. An error refuses the request with 401.
	// nil: every token is refused. TokenKey.Verify checks chatd's tokens.
	Auth func(ctx context.Context, token string) (Identity, error)
	// Push, when set, receives push notifications on a goroutine of its
	// own (at most 1024 wait; past that they are dropped and counted).
	Push func(ctx context.Context, n PushNote) error
	// Presence and Bus join several servers into one cluster; nil: this
	// server is a single node.
	Presence PresenceHook
	Bus      BusHook

	MachineID         uint32 // Snowflake machine id, 0..1023
	GatewayID         string // this node on the bus; default "gw<MachineID>"
	MaxBodyBytes      uint32
	MaxFrameBytes     uint32
	RatePerMinute     uint32 // sends per sender per conversation
	RESTRatePerMinute uint32
	RESTBurst         uint32
	Heartbeat         time.Duration // pings and the hello's heartbeat_ms
	MaxGroupMembers   uint32
	// MaxHTTPBodyBytes bounds REST request bodies (413 past it); 11 MiB.
	MaxHTTPBodyBytes int64
	// OriginPatterns are the cross-origin hosts whose pages may open the
	// WebSocket (github.com/coder/websocket AcceptOptions); same-origin
	// and non-browser clients always may.
	OriginPatterns []string
	Logger         *slog.Logger
}

// Server is the chat server core embedded in a Go program. It is an
// http.Handler serving the WebSocket (GET .../chat/v1/ws) and REST
// (.../api/v1/...) of PROTOCOL.md; see Mount. One goroutine owns the C
// server; every handler hands it work.
type Server struct {
	opts      ServerOptions
	log       *slog.Logger
	maxFrame  int64
	heartbeat time.Duration

	inbox   chan func(k *srvCore)
	wake    chan struct{}
	closing chan struct{}
	done    chan struct{}
	once    sync.Once
	ctx     context.Context
	cancel  context.CancelFunc

	mu       sync.Mutex // guards closed and handler registration
	closed   bool
	handlers sync.WaitGroup // HTTP handlers in flight
	hooks    sync.WaitGroup // hook goroutines (presence calls, push)
	draining atomic.Bool

	pushq     chan PushNote
	pushDrops atomic.Uint64

	opmu  sync.Mutex
	opRes map[uintptr]func(k *srvCore) // presence answers waiting for the loop
}

type srvCore struct {
	s      *Server
	srv    *C.chat_server
	h      cgo.Handle
	nextID uintptr
	sess   map[uintptr]*session
	dirty  map[uintptr]*session
	httpW  map[uintptr]chan httpAnswer
	timer  *time.Timer
	panics []any
}

type session struct {
	id    uintptr
	cs    *C.chat_session
	out   *wsConn
	gone  bool // the transport closed: the C session is closed
	endCh chan struct{}
}

type httpAnswer struct {
	status     int
	ctype      string
	body       []byte
	retryAfter uint32
}

// NewServer creates a server over its SQLite store.
func NewServer(opts ServerOptions) (*Server, error) {
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		inbox:   make(chan func(*srvCore), 1024),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		opRes:   map[uintptr]func(*srvCore){},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.opts.MaxHTTPBodyBytes <= 0 {
		s.opts.MaxHTTPBodyBytes = 11 << 20
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	k := &srvCore{s: s, sess: map[uintptr]*session{}, dirty: map[uintptr]*session{}, httpW: map[uintptr]chan httpAnswer{}}
	if err := k.create(); err != nil {
		s.cancel()
		return nil, err
	}
	if opts.Push != nil {
		s.pushq = make(chan PushNote, 1024)
		s.hooks.Add(1)
		go s.pushLoop()
	}
	go k.loop()
	return s, nil
}

func (k *srvCore) create() error {
	o := &k.s.opts
	var cs cstrs
	defer cs.free()
	st := C.chat_server_settings{version: C.CHAT_SERVER_SETTINGS_V1,
		machine_id:           C.uint32_t(o.MachineID),
		max_body_bytes:       C.uint32_t(o.MaxBodyBytes),
		max_frame_bytes:      C.uint32_t(o.MaxFrameBytes),
		rate_per_minute:      C.uint32_t(o.RatePerMinute),
		rest_rate_per_minute: C.uint32_t(o.RESTRatePerMinute),
		rest_burst:           C.uint32_t(o.RESTBurst),
		heartbeat_ms:         C.uint32_t(o.Heartbeat.Milliseconds()),
		max_group_members:    C.uint32_t(o.MaxGroupMembers)}
	if o.GatewayID != "" {
		st.gateway_id = cs.str(o.GatewayID)
	}
	path := o.StorePath
	if path == "" {
		path = ":memory:"
	}
	go_ := C.glue_server_opts{store_path: cs.str(path)}
	if o.Sync == SyncNormal {
		go_.sync_normal = 1
	}
	if o.Push != nil {
		go_.push = 1
	}
	if o.Presence != nil {
		go_.presence = 1
	}
	if o.Bus != nil {
		go_.bus = 1
	}
	k.h = cgo.NewHandle(k)
	var eb C.chat_errbuf
	if e := C.glue_server_new(&k.srv, &st, &go_, C.uintptr_t(k.h), &eb); e != C.CHAT_OK {
		k.h.Delete()
		return newError("chat_server_new", e, errbufText(&eb))
	}
	got := C.chat_server_settings{version: C.CHAT_SERVER_SETTINGS_V1}
	C.chat_server_get_settings(k.srv, &got)
	k.s.maxFrame = int64(got.max_frame_bytes)
	k.s.heartbeat = time.Duration(got.heartbeat_ms) * time.Millisecond
	return nil
}

// ---------------------------------------------------------------- loop --

func (k *srvCore) loop() {
	s := k.s
	k.timer = time.NewTimer(time.Hour)
	defer k.timer.Stop()
	for {
		k.service()
		select {
		case f := <-s.inbox:
			f(k)
			// Take what else has arrived, so that the sends of a burst
			// are committed together (group commit).
			for i := 0; i < 256; i++ {
				select {
				case f = <-s.inbox:
					f(k)
					continue
				default:
				}
				break
			}
		case <-s.wake:
			C.chat_server_run_posted(k.srv, nowMS())
		case <-k.timer.C:
		case <-s.closing:
			k.shutdown()
			return
		}
	}
}

// service runs the server's timer while it is due and writes what the
// sessions want written, then arms the timer.
func (k *srvCore) service() {
	k.flush()
	for i := 0; i < 16 && C.chat_server_next_deadline(k.srv) <= nowMS(); i++ {
		if e := C.chat_server_on_timer(k.srv, nowMS()); e != C.CHAT_OK {
			k.s.log.Error("chat: chat_server_on_timer", "err", newError("chat_server_on_timer", e, C.GoString(C.chat_server_errmsg(k.srv))))
			if Code(e).Fatal() {
				break
			}
		}
		k.flush()
	}
	k.reportPanics()
	wait, ok := untilDeadline(C.chat_server_next_deadline(k.srv))
	if !ok {
		wait = time.Hour
	}
	if !k.timer.Stop() {
		select {
		case <-k.timer.C:
		default:
		}
	}
	k.timer.Reset(wait)
}

// flush hands the frames of every session that wants writing to its
// writer, and closes those that want closing.
func (k *srvCore) flush() {
	for id, ss := range k.dirty {
		delete(k.dirty, id)
		if ss.gone {
			continue
		}
		for {
			var p *C.char
			var n C.size_t
			if C.chat_session_next_frame(ss.cs, &p, &n) != C.CHAT_OK {
				break
			}
			ss.out.push(C.GoBytes(unsafe.Pointer(p), C.int(n)), false)
		}
		if C.chat_session_wants(ss.cs)&C.CHAT_WANT_CLOSE != 0 {
			var reason *C.char
			code := C.chat_session_close_code(ss.cs, &reason)
			ss.out.closeWith(int(code), goStr(reason))
		}
	}
}

func (k *srvCore) shutdown() {
	s := k.s
	// Every connection ends (their handlers close their sessions through
	// the inbox, which keeps being served until they are gone).
	s.cancel()
	hdone := make(chan struct{})
	go func() { s.handlers.Wait(); s.hooks.Wait(); close(hdone) }()
	for waiting := true; waiting; {
		select {
		case f := <-s.inbox:
			f(k)
		case <-s.wake:
			C.chat_server_run_posted(k.srv, nowMS())
		case <-hdone:
			waiting = false
		}
	}
	for {
		select {
		case f := <-s.inbox:
			f(k)
			continue
		default:
		}
		break
	}
	// Answers of hooks that finished: complete their ops, then free.
	C.chat_server_run_posted(k.srv, nowMS())
	for id, ss := range k.sess {
		if !ss.gone {
			C.chat_server_close_session(k.srv, ss.cs, nowMS())
			ss.gone = true
		}
		delete(k.sess, id)
	}
	C.chat_server_free(k.srv)
	k.srv = nil
	k.h.Delete()
	for tag, ch := range k.httpW {
		ch <- httpAnswer{status: 503, ctype: "application/json", body: errorBody("unavailable", "server closed")}
		delete(k.httpW, tag)
	}
	close(s.done)
}

// Close stops the server: open connections are closed, handlers return,
// hooks are waited for, and the C server is freed. Requests arriving
// later are answered 503. Use Shutdown first for a graceful drain.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.once.Do(func() { close(s.closing) })
	<-s.done
	return nil
}

// Shutdown drains (new sessions are refused, waiting sends are committed
// and acked, every session is closed with 1001), waits for the sessions
// to close or ctx to end, then Closes.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	_ = s.do(ctx, func(k *srvCore) { C.chat_server_drain(k.srv, nowMS()) })
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var err error
	for {
		n := 0
		if e := s.do(ctx, func(k *srvCore) { n = len(k.sess) }); e != nil {
			err = e
			break
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
			continue
		}
		break
	}
	s.Close()
	return err
}

// do runs f on the loop and waits for it.
func (s *Server) do(ctx context.Context, f func(k *srvCore)) error {
	ran := make(chan struct{})
	select {
	case s.inbox <- func(k *srvCore) { f(k); close(ran) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
	select {
	case <-ran:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

// enter registers a handler; false when the server is closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

// ------------------------------------------------------------- HTTP --

// Mount registers the server on mux at the paths PROTOCOL.md gives it:
// "/chat/v1/" (the WebSocket, GET /chat/v1/ws) and "/api/v1/" (REST).
// It is the same as mux.Handle for both prefixes.
func (s *Server) Mount(mux *http.ServeMux) {
	mux.Handle("/chat/v1/", s)
	mux.Handle("/api/v1/", s)
}

// ServeHTTP serves the WebSocket at a path ending in /chat/v1/ws and REST
// at every path containing /api/v1/ (from there on it is the REST path),
// so the server also works behind http.StripPrefix or under a prefix
// ("/chat/v1/api/v1/..." is REST too: Config.RESTURL then names the
// prefix). Anything else is 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeError(w, 503, "unavailable", "server closed")
		return
	}
	defer s.handlers.Done()
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/chat/v1/ws"):
		s.serveWS(w, r)
	case strings.Contains(p, "/api/v1/"):
		s.serveREST(w, r, p[strings.Index(p, "/api/v1/"):])
	default:
		writeError(w, 404, "not_found", "no such endpoint")
	}
}

func errorBody(code, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	return b
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == 401 {
		h.Set("WWW-Authenticate", `Bearer realm="chat"`)
	}
	w.WriteHeader(status)
	w.Write(errorBody(code, msg))
}

func bearer(r *http.Request) string {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return r.URL.Query().Get("access_token")
}

// authenticate runs the Auth hook (a panic refuses, and is logged).
func (s *Server) authenticate(r *http.Request) (id Identity, err error) {
	tok := bearer(r)
	if tok == "" || s.opts.Auth == nil {
		return id, errors.New("missing token")
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("chat: ServerOptions.Auth panicked", "panic", p)
			err = fmt.Errorf("auth panicked: %v", p)
		}
	}()
	id, err = s.opts.Auth(r.Context(), tok)
	if err == nil && (!idValid(id.UserID) || !idValid(id.DeviceID)) {
		err = fmt.Errorf("Auth returned invalid ids %q/%q", id.UserID, id.DeviceID)
		s.log.Error("chat: " + err.Error())
	}
	return id, err
}

func idValid(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.:@-", c) >= 0) {
			return false
		}
	}
	return true
}

func (id *Identity) c() C.chat_identity {
	out := C.chat_identity{version: C.CHAT_IDENTITY_V1}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&out.user_id[0])), C.CHAT_ID_BUF-1), id.UserID)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&out.device_id[0])), C.CHAT_ID_BUF-1), id.DeviceID)
	if !id.Expires.IsZero() {
		out.expires_ms = C.int64_t(id.Expires.UnixMilli())
	}
	if id.Bot {
		out.kind = C.CHAT_SENDER_BOT
	}
	return out
}

func subprotocolOK(r *http.Request) bool {
	vals := r.Header.Values("Sec-WebSocket-Protocol")
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == "chat.v1" {
				return true
			}
		}
	}
	return false
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, 405, "method_not_allowed", "GET only")
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeError(w, 426, "upgrade_required", "WebSocket upgrade required")
		return
	}
	if s.draining.Load() {
		writeError(w, 503, "unavailable", "server is shutting down")
		return
	}
	if !subprotocolOK(r) {
		writeError(w, 400, "bad_request", "subprotocol chat.v1 required")
		return
	}
	id, err := s.authenticate(r)
	if err != nil {
		writeError(w, 401, "unauthorized", "missing or invalid token")
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{"chat.v1"},
		CompressionMode: websocket.CompressionDisabled,
		OriginPatterns:  s.opts.OriginPatterns,
	})
	if err != nil {
		return // Accept has answered
	}
	conn.SetReadLimit(s.maxFrame)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	out := &wsConn{conn: conn, ctx: ctx, cancel: cancel, signal: make(chan struct{}, 1)}
	ss := &session{out: out, endCh: make(chan struct{})}
	cid := id.c()
	var openErr error
	if err := s.do(ctx, func(k *srvCore) {
		k.nextID++
		ss.id = k.nextID
		if e := C.glue_open_session(k.srv, &ss.cs, &cid, C.uintptr_t(ss.id), nowMS()); e != C.CHAT_OK {
			openErr = newError("chat_server_open_session", e, C.GoString(C.chat_server_errmsg(k.srv)))
			return
		}
		k.sess[ss.id] = ss
		k.dirty[ss.id] = ss // hello
	}); err != nil || openErr != nil {
		conn.Close(websocket.StatusTryAgainLater, "unavailable")
		return
	}
	go s.writer(ss)
	go s.pinger(ctx, conn)
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			break
		}
		if typ != websocket.MessageText {
			out.closeWith(int(websocket.StatusUnsupportedData), "text frames only")
			break
		}
		if s.do(ctx, func(k *srvCore) {
			if ss.gone {
				return
			}
			var p *C.char
			if len(data) > 0 {
				p = (*C.char)(unsafe.Pointer(&data[0]))
			}
			C.chat_session_on_frame(ss.cs, p, C.size_t(len(data)), nowMS())
			k.dirty[ss.id] = ss
		}) != nil {
			break
		}
	}
	cancel()
	<-ss.endCh
	// The server may be closing: close the session through its loop
	// either way (shutdown keeps serving the inbox until we are done).
	select {
	case s.inbox <- func(k *srvCore) {
		if !ss.gone {
			ss.gone = true
			C.chat_server_close_session(k.srv, ss.cs, nowMS())
		}
		delete(k.sess, ss.id)
		delete(k.dirty, ss.id)
	}:
	case <-s.done:
	}
}

// writer writes a session's frames and its close.
func (s *Server) writer(ss *session) {
	w := ss.out
	defer close(ss.endCh)
	defer w.conn.CloseNow()
	for {
		w.mu.Lock()
		q, closeQ, code, reason := w.q, w.closeQ, w.code, w.reason
		w.q = nil
		w.mu.Unlock()
		for _, b := range q {
			wctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
			err := w.conn.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				w.cancel()
				return
			}
		}
		if closeQ {
			w.conn.Close(websocket.StatusCode(code), reason)
			w.cancel()
			return
		}
		select {
		case <-w.signal:
		case <-w.ctx.Done():
			// The server is closing or the reader ended.
			if s.ctx.Err() != nil {
				w.conn.Close(websocket.StatusGoingAway, "server closing")
			}
			return
		}
	}
}

// pinger pings every heartbeat; a peer that does not answer within one
// more heartbeat is cut.
func (s *Server) pinger(ctx context.Context, conn *websocket.Conn) {
	if s.heartbeat <= 0 {
		return
	}
	t := time.NewTicker(s.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, s.heartbeat+15*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				conn.CloseNow()
				return
			}
		}
	}
}

func (s *Server) serveREST(w http.ResponseWriter, r *http.Request, path string) {
	id, err := s.authenticate(r)
	if err != nil {
		writeError(w, 401, "unauthorized", "missing or invalid token")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxHTTPBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeError(w, 413, "too_large", "request body too large")
		} else {
			writeError(w, 400, "bad_request", "could not read the body")
		}
		return
	}
	q := r.URL.Query()
	q.Del("access_token")
	query := q.Encode()
	ctype := r.Header.Get("Content-Type")
	ans := make(chan httpAnswer, 1)
	var tag uintptr
	if err := s.do(r.Context(), func(k *srvCore) {
		var cs cstrs
		defer cs.free()
		k.nextID++
		tag = k.nextID
		// The request points at the identity: both in C memory.
		cid := (*C.chat_identity)(cs.alloc(C.sizeof_chat_identity))
		*cid = id.c()
		rq := (*C.chat_http_request)(cs.alloc(C.sizeof_chat_http_request))
		*rq = C.chat_http_request{version: C.CHAT_HTTP_REQUEST_V1,
			method: cs.str(r.Method), path: cs.str(path), identity: cid}
		if query != "" {
			rq.query = cs.str(query)
		}
		if ctype != "" {
			rq.content_type = cs.str(ctype)
		}
		if len(body) > 0 {
			rq.body = unsafe.Pointer(cs.bytes(body))
			rq.body_len = C.size_t(len(body))
		}
		resp := C.chat_http_response{version: C.CHAT_HTTP_RESPONSE_V1}
		switch e := C.glue_server_http(k.srv, rq, C.uintptr_t(tag), &resp, nowMS()); e {
		case C.CHAT_OK:
			ans <- copyAnswer(&resp)
		case C.CHAT_PENDING:
			k.httpW[tag] = ans
		default:
			ans <- httpAnswer{status: 500, ctype: "application/json",
				body: errorBody("internal", newError("chat_server_http", e, C.GoString(C.chat_server_errmsg(k.srv))).Error())}
		}
	}); err != nil {
		writeError(w, 503, "unavailable", "server closed")
		return
	}
	select {
	case a := <-ans:
		h := w.Header()
		ct := a.ctype
		if ct == "" {
			ct = "application/json"
		}
		h.Set("Content-Type", ct)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if a.retryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(int(a.retryAfter)))
		}
		if a.status == 401 {
			h.Set("WWW-Authenticate", `Bearer realm="chat"`)
		}
		w.WriteHeader(a.status)
		w.Write(a.body)
	case <-r.Context().Done():
		select {
		case s.inbox <- func(k *srvCore) {
			if _, ok := k.httpW[tag]; ok {
				delete(k.httpW, tag)
				C.glue_server_http_cancel(k.srv, C.uintptr_t(tag))
			}
		}:
		case <-s.done:
		}
	case <-s.ctx.Done():
		// Closing: an answer that waits on a module will not come.
		writeError(w, 503, "unavailable", "server closed")
	}
}

func copyAnswer(r *C.chat_http_response) httpAnswer {
	a := httpAnswer{status: int(r.status), ctype: goStr(r.content_type), retryAfter: uint32(r.retry_after_s)}
	if r.body != nil && r.body_len > 0 {
		a.body = C.GoBytes(r.body, C.int(r.body_len))
	}
	return a
}

// BusDeliver hands the server a message another gateway published to it
// (through a BusHook). Safe from any goroutine.
func (s *Server) BusDeliver(msg []byte) error {
	m := append([]byte(nil), msg...)
	select {
	case s.inbox <- func(k *srvCore) {
		var p *C.char
		if len(m) > 0 {
			p = (*C.char)(unsafe.Pointer(&m[0]))
		}
		if e := C.chat_server_bus_deliver(k.srv, p, C.size_t(len(m)), nowMS()); e != C.CHAT_OK {
			k.s.log.Warn("chat: bus message dropped", "err", newError("chat_server_bus_deliver", e, C.GoString(C.chat_server_errmsg(k.srv))))
		}
	}:
		return nil
	case <-s.done:
		return ErrClosed
	}
}

// ServerStats are the server's counters (chat_server_stats).
type ServerStats struct {
	SessionsOpen, SessionsOpenedTotal, SessionsClosedTotal    uint64
	FramesInTotal, FramesOutTotal, FramesRefusedTotal         uint64
	SendsCommittedTotal, SendsDuplicateTotal, CommitsTotal    uint64
	DeliveriesTotal, BusPublishedTotal, BusPublishErrorsTotal uint64
	PushTotal, PushErrorsTotal, ReceiptsAppliedTotal          uint64
	ReceiptFramesTotal, ResumeMessagesTotal, SlowClosesTotal  uint64
	PresenceOnline, StoreErrorsTotal, RESTLimitedTotal        uint64
	SessionsExpiredTotal, OpsInFlight, OpsPendingTotal        uint64
	PushDropped                                               uint64 // notes the Push hook's queue had no room for
}

// Stats reads the server's counters.
func (s *Server) Stats(ctx context.Context) (ServerStats, error) {
	var out ServerStats
	err := s.do(ctx, func(k *srvCore) {
		st := C.chat_server_stats{version: C.CHAT_SERVER_STATS_V1}
		C.chat_server_get_stats(k.srv, &st)
		out = ServerStats{uint64(st.sessions_open), uint64(st.sessions_opened_total), uint64(st.sessions_closed_total),
			uint64(st.frames_in_total), uint64(st.frames_out_total), uint64(st.frames_refused_total),
			uint64(st.sends_committed_total), uint64(st.sends_duplicate_total), uint64(st.commits_total),
			uint64(st.deliveries_total), uint64(st.bus_published_total), uint64(st.bus_publish_errors_total),
			uint64(st.push_total), uint64(st.push_errors_total), uint64(st.receipts_applied_total),
			uint64(st.receipt_frames_total), uint64(st.resume_messages_total), uint64(st.slow_closes_total),
			uint64(st.presence_online), uint64(st.store_errors_total), uint64(st.rest_limited_total),
			uint64(st.sessions_expired_total), uint64(st.ops_in_flight), uint64(st.ops_pending_total),
			s.pushDrops.Load()}
	})
	return out, err
}

// -------------------------------------------------- callbacks from C --

func serverOf(h C.uintptr_t) *srvCore {
	k, _ := cgo.Handle(h).Value().(*srvCore)
	return k
}

func (k *srvCore) guard(where string) {
	if r := recover(); r != nil {
		k.panics = append(k.panics, fmt.Sprintf("%s: %v", where, r))
	}
}

func (k *srvCore) reportPanics() {
	for _, p := range k.panics {
		k.s.log.Error("chat: panic in a server hook", "panic", p)
	}
	k.panics = nil
}

//export goLog
func goLog(h C.uintptr_t, level C.int, msg *C.char) {
	k := serverOf(h)
	if k == nil {
		return
	}
	defer k.guard("log")
	lv := slog.LevelDebug
	switch level {
	case C.CHAT_LOG_ERROR:
		lv = slog.LevelError
	case C.CHAT_LOG_WARN:
		lv = slog.LevelWarn
	case C.CHAT_LOG_INFO:
		lv = slog.LevelInfo
	}
	k.s.log.Log(context.Background(), lv, "libchat: "+goStr(msg))
}

// goServerWake is env.wake: any thread (a chat_op_post) asks the loop to
// call chat_server_run_posted.
//
//export goServerWake
func goServerWake(h C.uintptr_t) {
	k := serverOf(h)
	if k == nil {
		return
	}
	select {
	case k.s.wake <- struct{}{}:
	default:
	}
}

//export goSessionWants
func goSessionWants(h C.uintptr_t, sessUD C.uintptr_t) {
	k := serverOf(h)
	defer k.guard("on_session_wants")
	if ss, ok := k.sess[uintptr(sessUD)]; ok {
		k.dirty[ss.id] = ss
	}
}

//export goHTTPResponse
func goHTTPResponse(h C.uintptr_t, tag C.uintptr_t, r *C.chat_http_response) {
	k := serverOf(h)
	defer k.guard("on_http_response")
	if ch, ok := k.httpW[uintptr(tag)]; ok {
		delete(k.httpW, uintptr(tag))
		ch <- copyAnswer(r)
	}
}

//export goPushNotify
func goPushNotify(h C.uintptr_t, n *C.chat_push_note) C.int {
	k := serverOf(h)
	defer k.guard("push.notify")
	preview, _ := goChatStr(n.preview)
	note := PushNote{UserID: goStr(n.user_id), DeviceID: goStr(n.device_id), Platform: goStr(n.platform),
		PushToken: goStr(n.push_token), ConversationID: goStr(n.conversation_id), SenderID: goStr(n.sender_id),
		MessageID: uint64(n.message_id), Preview: preview}
	select {
	case k.s.pushq <- note:
		return C.CHAT_OK
	default:
		k.s.pushDrops.Add(1)
		return C.CHAT_ERR_MODULE
	}
}

func (s *Server) pushLoop() {
	defer s.hooks.Done()
	for {
		select {
		case n := <-s.pushq:
			func() {
				defer func() {
					if p := recover(); p != nil {
						s.log.Error("chat: ServerOptions.Push panicked", "panic", p)
					}
				}()
				ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
				defer cancel()
				if err := s.opts.Push(ctx, n); err != nil {
					s.log.Warn("chat: push failed", "user", n.UserID, "device", n.DeviceID, "err", err)
				}
			}()
		case <-s.ctx.Done():
			return
		}
	}
}

//export goPresenceOnline
func goPresenceOnline(h C.uintptr_t, user, device, gw *C.char, online C.int) {
	k := serverOf(h)
	defer k.guard("presence.device_online")
	if online != 0 {
		k.s.opts.Presence.DeviceOnline(goStr(user), goStr(device), goStr(gw))
	} else {
		k.s.opts.Presence.DeviceOffline(goStr(user), goStr(device), goStr(gw))
	}
}

//export goPresenceSetState
func goPresenceSetState(h C.uintptr_t, user *C.char, state C.int, last C.int64_t) {
	k := serverOf(h)
	defer k.guard("presence.set_state")
	k.s.opts.Presence.SetState(goStr(user), PresenceState(state), int64(last))
}

// startOp runs a presence call on its own goroutine; its answer is kept
// and the op posted, so that finish runs on the loop (goOpPosted).
func (s *Server) startOp(cookie uintptr, call func(ctx context.Context) func(k *srvCore)) {
	s.hooks.Add(1)
	go func() {
		defer s.hooks.Done()
		var fin func(k *srvCore)
		func() {
			defer func() {
				if p := recover(); p != nil {
					s.log.Error("chat: PresenceHook panicked", "panic", p)
					fin = nil
				}
			}()
			fin = call(s.ctx)
		}()
		if fin == nil {
			fin = func(k *srvCore) { C.glue_locate_complete(C.uintptr_t(cookie), C.CHAT_ERR_MODULE) }
		}
		s.opmu.Lock()
		s.opRes[cookie] = fin
		s.opmu.Unlock()
		C.glue_op_post(C.uintptr_t(cookie))
	}()
}

//export goPresenceLocate
func goPresenceLocate(h C.uintptr_t, user *C.char, cookie C.uintptr_t) {
	k := serverOf(h)
	defer k.guard("presence.locate")
	u := goStr(user)
	k.s.startOp(uintptr(cookie), func(ctx context.Context) func(k *srvCore) {
		locs, err := k.s.opts.Presence.Locate(ctx, u)
		return func(k *srvCore) {
			if err != nil {
				C.glue_locate_complete(cookie, C.CHAT_ERR_MODULE)
				return
			}
			for _, l := range locs {
				var cs cstrs
				C.glue_locate_emit(cookie, cs.str(l.GatewayID), cs.str(l.DeviceID))
				cs.free()
			}
			C.glue_locate_complete(cookie, C.CHAT_OK)
		}
	})
}

//export goPresenceGetState
func goPresenceGetState(h C.uintptr_t, user *C.char, cookie C.uintptr_t) {
	k := serverOf(h)
	defer k.guard("presence.get_state")
	u := goStr(user)
	k.s.startOp(uintptr(cookie), func(ctx context.Context) func(k *srvCore) {
		st, last, err := k.s.opts.Presence.GetState(ctx, u)
		return func(k *srvCore) {
			switch {
			case err == nil:
				C.glue_state_complete(cookie, C.CHAT_OK, C.int(st), C.int64_t(last))
			case errors.Is(err, ErrNotFound):
				C.glue_state_complete(cookie, C.CHAT_ERR_NOT_FOUND, 0, 0)
			default:
				C.glue_state_complete(cookie, C.CHAT_ERR_MODULE, 0, 0)
			}
		}
	})
}

// goOpPosted runs on the loop (inside chat_server_run_posted or
// on_timer): the answer of a presence call, posted by its goroutine.
//
//export goOpPosted
func goOpPosted(h C.uintptr_t, cookie C.uintptr_t) {
	k := serverOf(h)
	defer k.guard("presence completion")
	k.s.opmu.Lock()
	fin := k.s.opRes[uintptr(cookie)]
	delete(k.s.opRes, uintptr(cookie))
	k.s.opmu.Unlock()
	if fin != nil {
		fin(k)
	}
}

//export goBusPublish
func goBusPublish(h C.uintptr_t, gw *C.char, msg *C.char, n C.size_t) {
	k := serverOf(h)
	defer k.guard("bus.publish")
	b := C.GoBytes(unsafe.Pointer(msg), C.int(n))
	if err := k.s.opts.Bus.Publish(goStr(gw), b); err != nil {
		k.s.log.Warn("chat: bus publish failed", "gateway", gw, "err", err)
	}
}
