package chat

/*
#include "glue.h"
*/
import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/cgo"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/coder/websocket"
)

// Config says where and as whom a Client connects.
type Config struct {
	// URL of the server's WebSocket: "ws://HOST:PORT" or "wss://..."
	// (http:// and https:// are taken as ws:// and wss://). Without a
	// path, /chat/v1/ws.
	URL string
	// Token is the bearer token (PROTOCOL.md section 1).
	Token string
	// StorePath is the local SQLite store: messages, the outbox of
	// unacknowledged sends, receipt marks. Reopen the same file and the
	// client continues where it stopped. "": an in-memory store (nothing
	// survives Close).
	StorePath string

	// RESTURL is where REST requests go ("http://HOST:PORT"); the client
	// appends /api/v1/... to it. "": the URL's host over http(s).
	RESTURL string
	// TokenFunc, when set, is called on its own goroutine whenever the
	// server refuses the token or it expires; the token it returns is
	// handed to the client, which then reconnects and resumes. Without
	// it, answer AuthRequiredEvent with SetToken.
	TokenFunc func(ctx context.Context, why AuthReason) (string, error)
	// NoWait makes Dial return at once instead of waiting for the first
	// connection: the client works offline (sends wait in the outbox)
	// and connects in the background.
	NoWait bool
	// ManualDelivered: mark messages delivered only through
	// MarkDelivered (default: the client does it itself).
	ManualDelivered bool
	// BackoffBase and BackoffMax shape the reconnect schedule (full
	// jitter; defaults 1 s and 60 s).
	BackoffBase, BackoffMax time.Duration
	// HTTPClient performs the WebSocket handshake and REST requests;
	// nil: a client of this package.
	HTTPClient *http.Client
	// MaxQueuedEvents bounds the events waiting to be read from Events();
	// past it the oldest are dropped (an EventsDroppedEvent says how
	// many). 0: 100000.
	MaxQueuedEvents int
	// Logger receives the binding's own diagnostics; nil: slog.Default().
	Logger *slog.Logger
}

// Client is one logged-in device. All methods are safe for use from many
// goroutines; one goroutine owns the C client and runs every call on it.
type Client struct {
	cfg     Config
	wsURL   string
	restURL string
	httpc   *http.Client
	log     *slog.Logger

	ownTransport *http.Transport // closed with the client

	cmds    chan func(k *core)
	netc    chan netEv
	closing chan struct{}
	done    chan struct{}
	once    sync.Once

	ctx    context.Context // canceled when the client closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine but the loop and the pump

	evmu     sync.Mutex
	evq      []Event
	evDrop   int
	evSignal chan struct{}
	events   chan Event
	pumpDone chan struct{}
}

type netKind int

const (
	netOpen netKind = iota
	netFrame
	netClose
	netRefused
	netREST
)

type netEv struct {
	kind   netKind
	gen    uint64
	conn   *websocket.Conn
	data   []byte
	code   int
	id     uint32
	status int
}

type sendResult struct {
	id  uint64
	err error
}

type reqWaiter struct {
	done chan error
	conv *Conversation // create: the conversation the answer carried
	err  error         // the on_error that came with it
}

// core is the state only the loop goroutine touches.
type core struct {
	cl    *Client
	c     *C.chat_client
	h     cgo.Handle
	gen   uint64
	conn  *wsConn
	dial  context.CancelFunc // the dial in progress
	timer *time.Timer

	sends     map[string]chan sendResult
	reqs      map[uint32]*reqWaiter
	respID    uint32 // the request whose answer is being fed
	readyWait []chan error
	state     State

	listMsgs  []StoredMessage
	listConvs []Conversation
	cbPanic   any
}

// wsConn is one open WebSocket and its writer.
type wsConn struct {
	gen    uint64
	conn   *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	q      [][]byte
	closeQ bool // close after the queue
	code   int  // with this code and reason
	reason string
	signal chan struct{}
}

// closeWith asks the writer to close with code and reason once the queue
// is written.
func (w *wsConn) closeWith(code int, reason string) {
	w.mu.Lock()
	if !w.closeQ {
		w.closeQ, w.code, w.reason = true, code, reason
	}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *wsConn) push(b []byte, closeAfter bool) {
	w.mu.Lock()
	if b != nil {
		w.q = append(w.q, b)
	}
	if closeAfter {
		w.closeQ = true
	}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func wsURLs(cfg *Config) (string, string, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return "", "", &Error{Code: ErrInval, Name: ErrInval.Name(), Op: "Dial", Detail: "Config.URL: " + err.Error()}
	}
	rest := "http"
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "ws"
	case "wss", "https":
		u.Scheme, rest = "wss", "https"
	default:
		return "", "", &Error{Code: ErrInval, Name: ErrInval.Name(), Op: "Dial", Detail: fmt.Sprintf("Config.URL: scheme %q is not ws, wss, http or https", u.Scheme)}
	}
	if u.Host == "" {
		return "", "", &Error{Code: ErrInval, Name: ErrInval.Name(), Op: "Dial", Detail: "Config.URL: no host"}
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/chat/v1/ws"
	}
	restURL := cfg.RESTURL
	if restURL == "" {
		restURL = rest + "://" + u.Host
	}
	return u.String(), strings.TrimSuffix(restURL, "/"), nil
}

// Dial creates the client over its store and connects. Unless
// cfg.NoWait is set it waits for the first live connection: it fails with
// an error matching ErrAuth when the token is refused (without a
// cfg.TokenFunc; with one, it waits for the fresh token), or ctx's error.
// ctx bounds Dial only; Close ends the client.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	ws, rest, err := wsURLs(&cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, &Error{Code: ErrInval, Name: ErrInval.Name(), Op: "Dial", Detail: "Config.Token: required"}
	}
	cl := &Client{
		cfg: cfg, wsURL: ws, restURL: rest, httpc: cfg.HTTPClient, log: cfg.Logger,
		cmds:     make(chan func(*core), 64),
		netc:     make(chan netEv, 256),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		evSignal: make(chan struct{}, 1),
		events:   make(chan Event),
		pumpDone: make(chan struct{}),
	}
	if cl.httpc == nil {
		// A transport of its own, so that Close leaves no idle
		// connection (nor its goroutines) behind.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		cl.ownTransport = tr
		cl.httpc = &http.Client{Transport: tr}
	}
	if cl.log == nil {
		cl.log = slog.Default()
	}
	if cl.cfg.MaxQueuedEvents <= 0 {
		cl.cfg.MaxQueuedEvents = 100000
	}
	cl.ctx, cl.cancel = context.WithCancel(context.Background())

	k := &core{cl: cl, sends: map[string]chan sendResult{}, reqs: map[uint32]*reqWaiter{}}
	if err := k.create(); err != nil {
		cl.cancel()
		return nil, err
	}
	ready := make(chan error, 1)
	if !cfg.NoWait {
		k.readyWait = append(k.readyWait, ready)
	}
	go cl.pump()
	go k.loop()
	if cfg.NoWait {
		return cl, nil
	}
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

func (k *core) create() error {
	// The settings point at the env and backoff: all three live in C
	// memory (cgo forbids Go memory holding Go pointers to cross).
	var cs cstrs
	defer cs.free()
	env := (*C.chat_env)(cs.alloc(C.sizeof_chat_env))
	if e := C.glue_sys_env(env); e != C.CHAT_OK {
		return newError("chat_env_system", e, "libsodium failed to initialise")
	}
	bo := (*C.chat_backoff)(cs.alloc(C.sizeof_chat_backoff))
	*bo = C.chat_backoff_default()
	if k.cl.cfg.BackoffBase > 0 {
		bo.base_ms = C.uint32_t(k.cl.cfg.BackoffBase.Milliseconds())
		if bo.floor_ms > bo.base_ms {
			bo.floor_ms = bo.base_ms
		}
	}
	if k.cl.cfg.BackoffMax > 0 {
		bo.cap_ms = C.uint32_t(k.cl.cfg.BackoffMax.Milliseconds())
	}
	s := (*C.chat_client_settings)(cs.alloc(C.sizeof_chat_client_settings))
	s.version = C.CHAT_CLIENT_SETTINGS_V1
	s.env = env
	s.backoff = bo
	s.manual_delivered = C.bool(k.cl.cfg.ManualDelivered)
	path := k.cl.cfg.StorePath
	if path == "" {
		path = ":memory:"
	}
	k.h = cgo.NewHandle(k)
	var eb C.chat_errbuf
	if e := C.glue_client_new(&k.c, cs.str(path), s, C.uintptr_t(k.h), &eb); e != C.CHAT_OK {
		k.h.Delete()
		return newError("chat_client_new", e, errbufText(&eb))
	}
	tok := cs.str(k.cl.cfg.Token)
	if e := C.chat_client_set_token(k.c, tok, C.size_t(len(k.cl.cfg.Token)), nowMS()); e != C.CHAT_OK {
		err := k.err("chat_client_set_token", e)
		C.chat_client_free(k.c)
		k.h.Delete()
		return err
	}
	return nil
}

func (k *core) err(op string, e C.chat_err) error {
	return newError(op, e, C.GoString(C.chat_client_errmsg(k.c)))
}

// ---------------------------------------------------------------- loop --

func (k *core) loop() {
	cl := k.cl
	k.timer = time.NewTimer(time.Hour)
	defer k.timer.Stop()
	if e := C.chat_client_start(k.c, nowMS()); e != C.CHAT_OK {
		cl.log.Error("chat: chat_client_start failed", "err", k.err("chat_client_start", e))
	}
	for {
		k.service()
		select {
		case f := <-cl.cmds:
			f(k)
		case ev := <-cl.netc:
			k.onNet(ev)
		case <-k.timer.C:
			if C.chat_client_next_deadline(k.c) <= nowMS() {
				if e := C.chat_client_on_timer(k.c, nowMS()); e != C.CHAT_OK {
					cl.log.Warn("chat: chat_client_on_timer", "err", k.err("chat_client_on_timer", e))
				}
			}
		case <-cl.closing:
			k.shutdown()
			return
		}
		k.checkPanic()
	}
}

// service does what the client wants: connect, write, close, REST; then
// arms the timer for the next deadline.
func (k *core) service() {
	for i := 0; i < 4; i++ {
		w := C.chat_client_wants(k.c)
		if w&C.CHAT_CLIENT_WANT_CONNECT != 0 {
			k.connect()
		}
		if w&C.CHAT_CLIENT_WANT_WRITE != 0 {
			k.write()
		}
		if w&C.CHAT_CLIENT_WANT_CLOSE != 0 {
			k.closeConn()
		}
		if w&C.CHAT_CLIENT_WANT_REST != 0 {
			k.rest()
		}
		// Due already (a zero backoff, a retry): run it now.
		if C.chat_client_next_deadline(k.c) > nowMS() {
			break
		}
		C.chat_client_on_timer(k.c, nowMS())
	}
	k.checkPanic()
	wait, ok := untilDeadline(C.chat_client_next_deadline(k.c))
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

func (k *core) token() (string, bool) {
	var p *C.char
	var n C.size_t
	if C.chat_client_token(k.c, &p, &n) != C.CHAT_OK {
		return "", false
	}
	return C.GoStringN(p, C.int(n)), true
}

func (k *core) connect() {
	if e := C.chat_client_on_connecting(k.c, nowMS()); e != C.CHAT_OK {
		return
	}
	tok, _ := k.token()
	k.gen++
	gen := k.gen
	ctx, cancel := context.WithCancel(k.cl.ctx)
	k.dial = cancel
	cl := k.cl
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		h := http.Header{}
		h.Set("Authorization", "Bearer "+tok)
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		defer dcancel()
		conn, resp, err := websocket.Dial(dctx, cl.wsURL, &websocket.DialOptions{
			HTTPClient:      cl.httpc,
			HTTPHeader:      h,
			Subprotocols:    []string{"chat.v1"},
			CompressionMode: websocket.CompressionDisabled,
		})
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		ev := netEv{gen: gen}
		switch {
		case err == nil:
			ev.kind, ev.conn = netOpen, conn
		case resp != nil && resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode >= 100 && resp.StatusCode <= 599:
			ev.kind, ev.status = netRefused, resp.StatusCode
		default:
			ev.kind = netClose
		}
		select {
		case cl.netc <- ev:
		case <-cl.ctx.Done():
			if conn != nil {
				conn.CloseNow()
			}
		}
	}()
}

func (k *core) write() {
	for {
		var p *C.char
		var n C.size_t
		if C.chat_client_next_frame(k.c, &p, &n) != C.CHAT_OK {
			return
		}
		b := C.GoBytes(unsafe.Pointer(p), C.int(n))
		if k.conn != nil {
			k.conn.push(b, false)
		}
	}
}

func (k *core) closeConn() {
	k.write() // a last typing stop
	if k.conn != nil {
		k.conn.push(nil, true)
		return
	}
	if k.dial != nil {
		// Abandon the attempt: its goroutine's report (a new gen makes it
		// stale) is ignored, and the client hears of the close now.
		k.dial()
		k.dial = nil
		k.gen++
	}
	C.chat_client_on_close(k.c, 0, nowMS())
}

func (k *core) onNet(ev netEv) {
	switch ev.kind {
	case netOpen:
		if ev.gen != k.gen || k.conn != nil {
			ev.conn.CloseNow()
			return
		}
		k.dial = nil
		k.open(ev.conn)
	case netRefused:
		if ev.gen != k.gen {
			return
		}
		k.dial = nil
		C.chat_client_on_refused(k.c, C.int(ev.status), nowMS())
	case netClose:
		if ev.gen != k.gen {
			return
		}
		k.dial = nil
		if k.conn != nil {
			k.conn.cancel()
			k.conn = nil
		}
		C.chat_client_on_close(k.c, C.uint16_t(ev.code), nowMS())
	case netFrame:
		if k.conn == nil || ev.gen != k.conn.gen {
			return
		}
		var p *C.char
		if len(ev.data) > 0 {
			p = (*C.char)(unsafe.Pointer(&ev.data[0]))
		}
		C.chat_client_on_frame(k.c, p, C.size_t(len(ev.data)), nowMS())
	case netREST:
		var p *C.char
		if len(ev.data) > 0 {
			p = (*C.char)(unsafe.Pointer(&ev.data[0]))
		}
		k.respID = ev.id
		C.chat_client_on_response(k.c, C.uint32_t(ev.id), C.int(ev.status), p, C.size_t(len(ev.data)), nowMS())
		k.respID = 0
	}
}

// open starts the reader and writer of a new connection.
func (k *core) open(conn *websocket.Conn) {
	cl := k.cl
	ctx, cancel := context.WithCancel(cl.ctx)
	w := &wsConn{gen: k.gen, conn: conn, ctx: ctx, cancel: cancel, signal: make(chan struct{}, 1)}
	k.conn = w
	conn.SetReadLimit(1 << 20) // the core's max_frame_bytes default
	cl.wg.Add(2)
	go func() { // reader
		defer cl.wg.Done()
		code := 0
		for {
			typ, data, err := conn.Read(ctx)
			if err != nil {
				if s := websocket.CloseStatus(err); s > 0 {
					code = int(s)
				}
				break
			}
			if typ != websocket.MessageText {
				conn.Close(websocket.StatusUnsupportedData, "text frames only")
				break
			}
			select {
			case cl.netc <- netEv{kind: netFrame, gen: w.gen, data: data}:
			case <-ctx.Done():
				return
			}
		}
		cancel()
		select {
		case cl.netc <- netEv{kind: netClose, gen: w.gen, code: code}:
		case <-cl.ctx.Done():
		}
	}()
	go func() { // writer
		defer cl.wg.Done()
		defer conn.CloseNow()
		for {
			w.mu.Lock()
			q, closeQ := w.q, w.closeQ
			w.q = nil
			w.mu.Unlock()
			for _, b := range q {
				wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
				err := conn.Write(wctx, websocket.MessageText, b)
				wcancel()
				if err != nil {
					cancel()
					return
				}
			}
			if closeQ {
				// Close waits for the server's answer, which the reader
				// sees; bounded by coder/websocket's own timeout.
				conn.Close(websocket.StatusNormalClosure, "")
				return
			}
			select {
			case <-w.signal:
			case <-ctx.Done():
				return
			}
		}
	}()
	if C.chat_client_on_open(k.c, nowMS()) != C.CHAT_OK {
		// The client no longer waits for this socket (stopped meanwhile):
		// drop it; the reader's close report finds no connection.
		cancel()
		conn.CloseNow()
		k.conn = nil
	}
}

func (k *core) rest() {
	for {
		rq := C.chat_client_request{version: C.CHAT_CLIENT_REQUEST_V1}
		if C.chat_client_next_request(k.c, &rq) != C.CHAT_OK {
			return
		}
		id := uint32(rq.id)
		method := C.GoString(rq.method)
		path := C.GoString(rq.path)
		var body []byte
		if rq.body != nil {
			body = C.GoBytes(unsafe.Pointer(rq.body), C.int(rq.body_len))
		}
		tok, _ := k.token()
		cl := k.cl
		cl.wg.Add(1)
		go func() {
			defer cl.wg.Done()
			status, data := cl.doREST(method, path, body, tok)
			select {
			case cl.netc <- netEv{kind: netREST, id: id, status: status, data: data}:
			case <-cl.ctx.Done():
			}
		}()
	}
}

// doREST performs one request; status 0 when no answer came.
func (cl *Client) doREST(method, path string, body []byte, tok string) (int, []byte) {
	ctx, cancel := context.WithTimeout(cl.ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, cl.restURL+path, rd)
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cl.httpc.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, data
}

// shutdown ends everything the loop started, then frees the C client.
func (k *core) shutdown() {
	cl := k.cl
	C.chat_client_stop(k.c, nowMS())
	if k.conn != nil {
		// A graceful close, briefly: the outbox is in the store anyway.
		k.write()
		k.conn.push(nil, true)
		t := time.NewTimer(time.Second)
	wait:
		for {
			select {
			case ev := <-cl.netc:
				if ev.kind == netClose && ev.gen == k.conn.gen {
					break wait
				}
				if ev.kind == netOpen {
					ev.conn.CloseNow()
				}
			case <-t.C:
				break wait
			}
		}
		t.Stop()
	}
	cl.cancel()
	// Goroutines may be blocked handing us an event: drain until all end.
	wgDone := make(chan struct{})
	go func() { cl.wg.Wait(); close(wgDone) }()
	for {
		select {
		case ev := <-cl.netc:
			if ev.kind == netOpen {
				ev.conn.CloseNow()
			}
			continue
		case <-wgDone:
		}
		break
	}
	C.chat_client_free(k.c)
	k.c = nil
	k.h.Delete()
	for id, ch := range k.sends {
		ch <- sendResult{err: ErrClosed}
		delete(k.sends, id)
	}
	for id, w := range k.reqs {
		w.done <- ErrClosed
		delete(k.reqs, id)
	}
	for _, ch := range k.readyWait {
		ch <- ErrClosed
	}
	k.readyWait = nil
	if cl.ownTransport != nil {
		cl.ownTransport.CloseIdleConnections()
	}
	close(cl.done)
	<-cl.pumpDone
}

// ------------------------------------------------------------- events --

func (cl *Client) emit(ev Event) {
	cl.evmu.Lock()
	if len(cl.evq) >= cl.cfg.MaxQueuedEvents {
		cl.evq = cl.evq[1:]
		cl.evDrop++
	}
	cl.evq = append(cl.evq, ev)
	cl.evmu.Unlock()
	select {
	case cl.evSignal <- struct{}{}:
	default:
	}
}

// pump hands queued events to the Events channel, so that the loop never
// waits for the app.
func (cl *Client) pump() {
	defer close(cl.pumpDone)
	defer close(cl.events)
	for {
		cl.evmu.Lock()
		var ev Event
		if cl.evDrop > 0 {
			ev = EventsDroppedEvent{Dropped: cl.evDrop}
			cl.evDrop = 0
		} else if len(cl.evq) > 0 {
			ev = cl.evq[0]
			cl.evq[0] = nil
			cl.evq = cl.evq[1:]
		}
		cl.evmu.Unlock()
		if ev == nil {
			select {
			case <-cl.evSignal:
				continue
			case <-cl.done:
				return
			}
		}
		select {
		case cl.events <- ev:
		case <-cl.done:
			return
		}
	}
}

// Events delivers what happens, in order: messages, acks, receipts,
// typing, presence, connection state, auth-required and errors. The
// channel is closed by Close. Events wait in a queue (up to
// Config.MaxQueuedEvents) until read, so the client never blocks on a
// slow reader.
func (cl *Client) Events() <-chan Event { return cl.events }

// ------------------------------------------------------------ commands --

// call runs f on the loop and waits for it, ctx or Close.
func call[T any](cl *Client, ctx context.Context, f func(k *core) T) (T, error) {
	var zero T
	res := make(chan T, 1)
	select {
	case cl.cmds <- func(k *core) { res <- f(k) }:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-cl.done:
		return zero, ErrClosed
	}
	select {
	case v := <-res:
		return v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-cl.done:
		return zero, ErrClosed
	}
}

// Enqueue writes a text message to the outbox (in the store, so it
// survives a crash) and returns its client_msg_id; the client sends it
// now or after the next connect, until acked (an AckEvent).
func (cl *Client) Enqueue(ctx context.Context, conversationID, body string) (string, error) {
	type r struct {
		id  string
		err error
	}
	v, err := call(cl, ctx, func(k *core) r {
		id, _, err := k.send(conversationID, body, false)
		return r{id, err}
	})
	if err != nil {
		return "", err
	}
	return v.id, v.err
}

// Send sends a text message and waits until the server has stored it
// durably (acked); it returns the message id. When ctx ends first the
// message stays in the outbox and is still delivered: only the waiting
// stops. A refusal by the server is a *WireError.
func (cl *Client) Send(ctx context.Context, conversationID, body string) (uint64, error) {
	type r struct {
		ch  chan sendResult
		err error
	}
	v, err := call(cl, ctx, func(k *core) r {
		_, ch, err := k.send(conversationID, body, true)
		return r{ch, err}
	})
	if err != nil {
		return 0, err
	}
	if v.err != nil {
		return 0, v.err
	}
	select {
	case res := <-v.ch:
		return res.id, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-cl.done:
		return 0, ErrClosed
	}
}

func (k *core) send(conv, body string, wait bool) (string, chan sendResult, error) {
	var cs cstrs
	defer cs.free()
	var out [C.CHAT_CLIENT_MSG_ID_BUF]C.char
	cb := cs.bytes([]byte(body))
	if e := C.chat_client_send(k.c, cs.str(conv), cb, C.size_t(len(body)), &out[0], nowMS()); e != C.CHAT_OK {
		return "", nil, k.err("chat_client_send", e)
	}
	id := C.GoString(&out[0])
	if !wait {
		return id, nil, nil
	}
	ch := make(chan sendResult, 1)
	k.sends[id] = ch
	return id, ch, nil
}

// OutboxLen is the number of sends not yet acked.
func (cl *Client) OutboxLen(ctx context.Context) (int, error) {
	return call(cl, ctx, func(k *core) int { return int(C.chat_client_outbox_len(k.c)) })
}

// State is the connection state.
func (cl *Client) State(ctx context.Context) (State, error) {
	return call(cl, ctx, func(k *core) State { return State(C.chat_client_get_state(k.c)) })
}

// SetToken gives the client a new bearer token. After an
// AuthRequiredEvent the client reconnects with it at once and resumes.
func (cl *Client) SetToken(ctx context.Context, token string) error {
	v, err := call(cl, ctx, func(k *core) error {
		var cs cstrs
		defer cs.free()
		e := C.chat_client_set_token(k.c, cs.str(token), C.size_t(len(token)), nowMS())
		return k.err("chat_client_set_token", e)
	})
	if err != nil {
		return err
	}
	return v
}

func (cl *Client) mark(ctx context.Context, conv string, upTo uint64, read bool) error {
	v, err := call(cl, ctx, func(k *core) error {
		var cs cstrs
		defer cs.free()
		if read {
			return k.err("chat_client_mark_read", C.chat_client_mark_read(k.c, cs.str(conv), C.uint64_t(upTo), nowMS()))
		}
		return k.err("chat_client_mark_delivered", C.chat_client_mark_delivered(k.c, cs.str(conv), C.uint64_t(upTo), nowMS()))
	})
	if err != nil {
		return err
	}
	return v
}

// MarkRead records that the user read the conversation up to upTo; it is
// stored at once and sent (batched) until the server has it.
func (cl *Client) MarkRead(ctx context.Context, conversationID string, upTo uint64) error {
	return cl.mark(ctx, conversationID, upTo, true)
}

// MarkDelivered records that this device has the conversation up to upTo
// (only needed with Config.ManualDelivered).
func (cl *Client) MarkDelivered(ctx context.Context, conversationID string, upTo uint64) error {
	return cl.mark(ctx, conversationID, upTo, false)
}

// Typing is a keystroke in the conversation's input box; the client
// sends typing indicators at a sensible rate.
func (cl *Client) Typing(ctx context.Context, conversationID string) error {
	v, err := call(cl, ctx, func(k *core) error {
		var cs cstrs
		defer cs.free()
		return k.err("chat_client_typing", C.chat_client_typing(k.c, cs.str(conversationID), nowMS()))
	})
	if err != nil {
		return err
	}
	return v
}

// WatchPresence replaces the set of users whose presence is wanted (at
// most 100); PresenceEvents follow.
func (cl *Client) WatchPresence(ctx context.Context, userIDs ...string) error {
	v, err := call(cl, ctx, func(k *core) error {
		var cs cstrs
		defer cs.free()
		arr := cs.strArray(userIDs)
		return k.err("chat_client_watch_presence", C.chat_client_watch_presence(k.c, arr, C.size_t(len(userIDs)), nowMS()))
	})
	if err != nil {
		return err
	}
	return v
}

// request starts a REST request on the loop (start returns its id) and
// waits for it to finish.
func (cl *Client) request(ctx context.Context, op string, start func(k *core, cs *cstrs, id *C.uint32_t) C.chat_err) (*reqWaiter, error) {
	type r struct {
		w   *reqWaiter
		err error
	}
	v, err := call(cl, ctx, func(k *core) r {
		var cs cstrs
		defer cs.free()
		var id C.uint32_t
		if e := start(k, &cs, &id); e != C.CHAT_OK {
			return r{nil, k.err(op, e)}
		}
		w := &reqWaiter{done: make(chan error, 1)}
		k.reqs[uint32(id)] = w
		return r{w, nil}
	})
	if err != nil {
		return nil, err
	}
	if v.err != nil {
		return nil, v.err
	}
	select {
	case err := <-v.w.done:
		return v.w, err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-cl.done:
		return nil, ErrClosed
	}
}

// CreateConversation creates a group (name != "") or a direct
// conversation (name "", exactly one other member) over REST. A direct
// conversation with the same peer is returned again.
func (cl *Client) CreateConversation(ctx context.Context, name string, members ...string) (Conversation, error) {
	w, err := cl.request(ctx, "chat_client_create_conversation", func(k *core, cs *cstrs, id *C.uint32_t) C.chat_err {
		var n *C.char
		if name != "" {
			n = cs.str(name)
		}
		return C.chat_client_create_conversation(k.c, n, cs.strArray(members), C.size_t(len(members)), id, nowMS())
	})
	if err != nil {
		return Conversation{}, err
	}
	if w.conv == nil {
		return Conversation{}, &Error{Code: ErrModule, Name: ErrModule.Name(), Op: "CreateConversation", Detail: "the answer carried no conversation"}
	}
	return *w.conv, nil
}

// Conversations fetches the conversation list over REST into the store
// and returns every stored conversation, most recent activity first.
func (cl *Client) Conversations(ctx context.Context) ([]Conversation, error) {
	if _, err := cl.request(ctx, "chat_client_fetch_conversations", func(k *core, cs *cstrs, id *C.uint32_t) C.chat_err {
		return C.chat_client_fetch_conversations(k.c, id, nowMS())
	}); err != nil {
		return nil, err
	}
	return cl.StoredConversations(ctx)
}

// StoredConversations lists the conversations in the local store (no
// network).
func (cl *Client) StoredConversations(ctx context.Context) ([]Conversation, error) {
	type r struct {
		v   []Conversation
		err error
	}
	v, err := call(cl, ctx, func(k *core) r {
		k.listConvs = nil
		e := C.glue_client_list_conversations(k.c, C.uintptr_t(k.h))
		out := k.listConvs
		k.listConvs = nil
		return r{out, k.err("chat_client_list_conversations", e)}
	})
	if err != nil {
		return nil, err
	}
	return v.v, v.err
}

// StoredMessage is a message as the local store has it.
type StoredMessage struct {
	Message
	Own     bool         // sent by this user
	Pending bool         // own and not yet acked (ID is 0)
	State   ReceiptState // own: the best receipt seen
}

// Messages lists up to limit stored messages of a conversation with ids
// below before (0: the newest), oldest first, then its unacked sends. No
// network.
func (cl *Client) Messages(ctx context.Context, conversationID string, before uint64, limit int) ([]StoredMessage, error) {
	type r struct {
		v   []StoredMessage
		err error
	}
	v, err := call(cl, ctx, func(k *core) r {
		var cs cstrs
		defer cs.free()
		k.listMsgs = nil
		e := C.glue_client_list_messages(k.c, cs.str(conversationID), C.uint64_t(before), C.uint32_t(limit), C.uintptr_t(k.h))
		out := k.listMsgs
		k.listMsgs = nil
		return r{out, k.err("chat_client_list_messages", e)}
	})
	if err != nil {
		return nil, err
	}
	return v.v, v.err
}

// History pages older history: it fetches the page of up to limit
// messages below before (0: the newest page) from the server into the
// store, then returns that page from the store, oldest first.
func (cl *Client) History(ctx context.Context, conversationID string, before uint64, limit int) ([]StoredMessage, error) {
	if _, err := cl.request(ctx, "chat_client_load_older", func(k *core, cs *cstrs, id *C.uint32_t) C.chat_err {
		return C.chat_client_load_older(k.c, cs.str(conversationID), C.uint64_t(before), C.uint32_t(limit), id, nowMS())
	}); err != nil {
		return nil, err
	}
	msgs, err := cl.Messages(ctx, conversationID, before, limit)
	if err != nil {
		return nil, err
	}
	// Messages ends with the unacked sends; a page of history has none.
	out := msgs[:0]
	for _, m := range msgs {
		if !m.Pending {
			out = append(out, m)
		}
	}
	return out, nil
}

// RegisterDevice ties this device's push token to it on the server
// (platform "apns", "fcm" or "webpush").
func (cl *Client) RegisterDevice(ctx context.Context, platform, pushToken string) error {
	_, err := cl.request(ctx, "chat_client_register_device", func(k *core, cs *cstrs, id *C.uint32_t) C.chat_err {
		return C.chat_client_register_device(k.c, cs.str(platform), cs.str(pushToken), id, nowMS())
	})
	return err
}

// Close stops the client: the connection is closed (briefly gracefully),
// every goroutine of the client ends, and the C client is freed. Sends
// not yet acked stay in the store's outbox for the next Dial. Calls
// waiting on the client return ErrClosed; Events is closed. Safe to call
// more than once and from any goroutine.
func (cl *Client) Close() error {
	cl.once.Do(func() { close(cl.closing) })
	<-cl.done
	return nil
}

// -------------------------------------------------- callbacks from C --

func clientOf(h C.uintptr_t) *core {
	k, _ := cgo.Handle(h).Value().(*core)
	return k
}

// guard keeps a panic in the binding's own callback code from unwinding
// through C: it is recorded and re-reported by the loop.
func (k *core) guard() {
	if r := recover(); r != nil {
		k.cbPanic = r
	}
}

func (k *core) checkPanic() {
	if k.cbPanic != nil {
		p := k.cbPanic
		k.cbPanic = nil
		k.cl.log.Error("chat: panic in a client callback", "panic", p)
		k.cl.emit(ErrorEvent{Err: fmt.Errorf("chat: panic in a client callback: %v", p)})
	}
}

//export goClientConnection
func goClientConnection(h C.uintptr_t, state C.int) {
	k := clientOf(h)
	defer k.guard()
	k.state = State(state)
	k.cl.emit(ConnectionEvent{State: k.state})
	switch k.state {
	case StateReady:
		for _, ch := range k.readyWait {
			ch <- nil
		}
		k.readyWait = nil
	}
}

//export goClientHello
func goClientHello(h C.uintptr_t, p *C.chat_hello) {
	k := clientOf(h)
	defer k.guard()
	k.cl.emit(HelloEvent{goHello(p)})
}

//export goClientMessage
func goClientMessage(h C.uintptr_t, m *C.chat_message, origin C.int) {
	k := clientOf(h)
	defer k.guard()
	k.cl.emit(MessageEvent{Message: goMessage(m), Origin: Origin(origin)})
}

//export goClientAck
func goClientAck(h C.uintptr_t, a *C.chat_ack) {
	k := clientOf(h)
	defer k.guard()
	ack := goAck(a)
	if ch, ok := k.sends[ack.ClientMsgID]; ok {
		delete(k.sends, ack.ClientMsgID)
		ch <- sendResult{id: ack.MessageID}
	}
	k.cl.emit(AckEvent{ack})
}

//export goClientReceipt
func goClientReceipt(h C.uintptr_t, r *C.chat_receipt) {
	k := clientOf(h)
	defer k.guard()
	k.cl.emit(ReceiptEvent{goReceipt(r)})
}

//export goClientTyping
func goClientTyping(h C.uintptr_t, conv, user *C.char, typing C.bool) {
	k := clientOf(h)
	defer k.guard()
	k.cl.emit(TypingEvent{ConversationID: goStr(conv), UserID: goStr(user), Typing: bool(typing)})
}

//export goClientPresence
func goClientPresence(h C.uintptr_t, p *C.chat_presence) {
	k := clientOf(h)
	defer k.guard()
	k.cl.emit(PresenceEvent{goPresence(p)})
}

//export goClientStateChange
func goClientStateChange(h C.uintptr_t, s *C.chat_state_change) {
	k := clientOf(h)
	defer k.guard()
	k.cl.emit(ReadSyncEvent{ConversationID: goStr(s.conversation_id), LastReadID: uint64(s.last_read_message_id)})
}

//export goClientConversation
func goClientConversation(h C.uintptr_t, c *C.chat_conversation) {
	k := clientOf(h)
	defer k.guard()
	conv := goConversation(c)
	if w, ok := k.reqs[k.respID]; ok && k.respID != 0 {
		cp := conv
		w.conv = &cp
	}
	k.cl.emit(ConversationEvent{conv})
}

func wireErrorOf(f *C.chat_error_frame, status int) *WireError {
	msg, _ := goChatStr(f.message)
	ref, _ := goChatStr(f.ref)
	code := goStr(f.code)
	if code == "" {
		if p := C.chat_wire_error_str(f.wire); p != nil {
			code = C.GoString(p)
		}
	}
	w := &WireError{Code: WireCode(code), Message: msg, Ref: ref, HTTPStatus: status}
	if f.has_retry_after {
		w.RetryAfter = time.Duration(f.retry_after_ms) * time.Millisecond
	}
	return w
}

//export goClientError
func goClientError(h C.uintptr_t, e *C.chat_client_error) {
	k := clientOf(h)
	defer k.guard()
	ev := ErrorEvent{
		ClientMsgID:    goStr(e.client_msg_id),
		ConversationID: goStr(e.conversation_id),
		HTTPStatus:     int(e.http_status),
		Retrying:       bool(e.retrying),
	}
	if e.wire != nil {
		ev.Err = wireErrorOf(e.wire, int(e.http_status))
	} else {
		c := Code(e.err)
		ev.Err = &Error{Code: c, Name: c.Name(), Detail: goStr(e.message)}
	}
	if ev.ClientMsgID != "" && !ev.Retrying {
		if ch, ok := k.sends[ev.ClientMsgID]; ok {
			delete(k.sends, ev.ClientMsgID)
			ch <- sendResult{err: ev.Err}
		}
	}
	if w, ok := k.reqs[k.respID]; ok && k.respID != 0 && !ev.Retrying {
		w.err = ev.Err
	}
	k.cl.emit(ev)
}

//export goClientResume
func goClientResume(h C.uintptr_t, p *C.chat_resume_progress) {
	k := clientOf(h)
	defer k.guard()
	k.cl.emit(ResumeEvent{ConversationID: goStr(p.conversation_id), GapsOpen: uint32(p.gaps_open),
		Messages: uint32(p.messages), Resumed: bool(p.resumed), Complete: bool(p.complete)})
}

//export goClientRequestDone
func goClientRequestDone(h C.uintptr_t, id C.uint32_t, result C.int) {
	k := clientOf(h)
	defer k.guard()
	w, ok := k.reqs[uint32(id)]
	if !ok {
		return
	}
	delete(k.reqs, uint32(id))
	var err error
	if result != C.CHAT_OK {
		err = w.err
		if err == nil {
			c := Code(result)
			err = &Error{Code: c, Name: c.Name(), Op: "request"}
		}
	}
	w.done <- err
}

//export goClientAuthRequired
func goClientAuthRequired(h C.uintptr_t, reason C.int) {
	k := clientOf(h)
	defer k.guard()
	why := AuthReason(reason)
	k.cl.emit(AuthRequiredEvent{Reason: why})
	if k.cl.cfg.TokenFunc == nil {
		// Dial fails; with a TokenFunc it waits for the fresh token.
		for _, ch := range k.readyWait {
			ch <- &Error{Code: ErrAuth, Name: ErrAuth.Name(), Op: "Dial", Detail: "the server refused the token (" + why.String() + ")"}
		}
		k.readyWait = nil
	}
	if k.cl.cfg.TokenFunc != nil {
		cl := k.cl
		cl.wg.Add(1)
		go cl.refreshToken(why)
	}
}

// refreshToken asks Config.TokenFunc for a token; a failure or a panic
// becomes an ErrorEvent and the client stays unauthorized.
func (cl *Client) refreshToken(why AuthReason) {
	defer cl.wg.Done()
	tok, err := func() (tok string, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("chat: Config.TokenFunc panicked: %v", r)
			}
		}()
		ctx, cancel := context.WithTimeout(cl.ctx, time.Minute)
		defer cancel()
		return cl.cfg.TokenFunc(ctx, why)
	}()
	if err == nil {
		err = cl.SetToken(cl.ctx, tok)
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
		cl.emit(ErrorEvent{Err: err})
	}
}

//export goListMessage
func goListMessage(h C.uintptr_t, m *C.chat_client_message) {
	k := clientOf(h)
	defer k.guard()
	k.listMsgs = append(k.listMsgs, StoredMessage{Message: goMessage(m.message), Own: bool(m.own),
		Pending: bool(m.pending), State: ReceiptState(m.state)})
}

//export goListConversation
func goListConversation(h C.uintptr_t, c *C.chat_conversation) {
	k := clientOf(h)
	defer k.guard()
	k.listConvs = append(k.listConvs, goConversation(c))
}
