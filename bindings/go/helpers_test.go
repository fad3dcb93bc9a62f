package chat

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The suite starts real chatd processes (CHATD, set by meson; otherwise
// the build directory next to this module) on 127.0.0.1 with port 0 and a
// temporary data directory, as tests/integration/conftest.py does.

// T is the deadline for anything that should take milliseconds, generous
// for a loaded two-core machine.
const T = 20 * time.Second

func tool(t testing.TB, env, rel string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, _ := filepath.Abs(filepath.Join("..", "..", "build", rel))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s is not set and %s does not exist", env, p)
	}
	return p
}

type chatd struct {
	t    testing.TB
	bin  string
	dir  string
	args []string
	cmd  *exec.Cmd
	port int
	log  *os.File
}

func newChatd(t testing.TB, args ...string) *chatd {
	d := &chatd{t: t, bin: tool(t, "CHATD", "chatd/chatd"), dir: filepath.Join(t.TempDir(), "data"), args: args}
	d.start("127.0.0.1:0")
	t.Cleanup(func() { d.kill() })
	return d
}

var listenRE = regexp.MustCompile(`^listening on 127\.0\.0\.1:(\d+)$`)

func (d *chatd) start(listen string) {
	t := d.t
	t.Helper()
	var err error
	d.log, err = os.CreateTemp(t.TempDir(), "chatd-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--listen", listen, "--data-dir", d.dir}, d.args...)
	d.cmd = exec.Command(d.bin, args...)
	d.cmd.Stderr = d.log
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case l := <-line:
		m := listenRE.FindStringSubmatch(l)
		if m == nil {
			d.kill()
			t.Fatalf("chatd did not start: %q\n%s", l, d.logText())
		}
		fmt.Sscan(m[1], &d.port)
	case <-time.After(30 * time.Second):
		d.kill()
		t.Fatalf("chatd did not start within 30s\n%s", d.logText())
	}
}

// restart stops chatd (with sig) and starts it again on the same port and
// data directory.
func (d *chatd) restart(sig syscall.Signal) {
	d.stop(sig)
	d.start(fmt.Sprintf("127.0.0.1:%d", d.port))
}

func (d *chatd) stop(sig syscall.Signal) {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-done
		d.t.Errorf("chatd did not exit within 20s after %v", sig)
	}
	d.cmd = nil
	d.log.Close()
}

func (d *chatd) kill() { d.stop(syscall.SIGKILL) }

func (d *chatd) logText() string {
	b, _ := os.ReadFile(d.log.Name())
	return string(b)
}

func (d *chatd) url() string { return fmt.Sprintf("ws://127.0.0.1:%d", d.port) }

// token mints a token with `chatd token` (ttl in seconds; 0: never
// expires).
func (d *chatd) token(user, device string, ttl int) string {
	d.t.Helper()
	out, err := exec.Command(d.bin, "token", "--data-dir", d.dir, "--user", user, "--device", device,
		"--ttl", fmt.Sprint(ttl)).Output()
	if err != nil {
		d.t.Fatalf("chatd token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// dial connects a client and closes it at the end of the test.
func dial(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase, cfg.BackoffMax = 100*time.Millisecond, time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), T)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor reads events until match returns true; it fails after T.
func waitFor[E Event](t testing.TB, c *Client, what string, match func(E) bool) E {
	t.Helper()
	timeout := time.After(T)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s", what)
			}
			if e, ok := ev.(E); ok && (match == nil || match(e)) {
				return e
			}
		case <-timeout:
			st, _ := c.State(context.Background())
			t.Fatalf("no %s within %v (state %v)", what, T, st)
		}
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), T)
	t.Cleanup(cancel)
	return ctx
}
