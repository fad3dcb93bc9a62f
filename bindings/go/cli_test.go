package chat

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cli drives the C chat-cli (examples/chat-cli) line by line.
type cli struct {
	t     testing.TB
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	seen  []string
}

func startCLI(t testing.TB, url, token string) *cli {
	bin := tool(t, "CHAT_CLI", "examples/chat-cli")
	c := &cli{t: t, lines: make(chan string, 1024)}
	c.cmd = exec.Command(bin, "--url", url, "--token", token, "--backoff-base-ms", "100", "--backoff-cap-ms", "1000")
	var err error
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	return c
}

func (c *cli) say(line string) { fmt.Fprintln(c.in, line) }

// expect returns the first line starting with prefix.
func (c *cli) expect(prefix string) string {
	c.t.Helper()
	timeout := time.After(T)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("chat-cli exited while waiting for %q; it printed:\n%s", prefix, strings.Join(c.seen, "\n"))
			}
			c.seen = append(c.seen, l)
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			c.t.Fatalf("no %q line from chat-cli within %v; it printed:\n%s", prefix, T, strings.Join(c.seen, "\n"))
		}
	}
}

// The C client (chat-cli, libwebsockets) against the Go-embedded server:
// the wire contract holds across implementations, both ways, receipts
// included.
func TestEmbeddedWithCChatCLI(t *testing.T) {
	t.Parallel()
	e := newEmbedded(t, ServerOptions{})
	ctx := ctxT(t)
	bob := dial(t, Config{URL: e.url(), Token: e.token("bob", "laptop", time.Hour)})
	alice := startCLI(t, e.url(), e.token("alice", "cli", time.Hour))
	alice.expect("state ready")
	alice.say("create bob")
	conv := strings.Fields(alice.expect("conversation "))[1]
	alice.say("open " + conv)
	alice.expect("opened " + conv)
	alice.say("say hi from C")
	alice.expect("ack ")
	fromC := waitFor(t, bob, "the C client's message", func(m MessageEvent) bool {
		return m.Body == "hi from C" && m.SenderID == "alice" && m.ConversationID == conv
	})
	id, err := bob.Send(ctx, conv, "hi from Go")
	if err != nil {
		t.Fatal(err)
	}
	got := alice.expect(fmt.Sprintf("message %s %d bob live", conv, id))
	if !strings.HasSuffix(got, "hi from Go") {
		t.Fatalf("chat-cli printed %q", got)
	}
	if err := bob.MarkRead(ctx, conv, fromC.ID); err != nil {
		t.Fatal(err)
	}
	alice.expect(fmt.Sprintf("receipt %s %d bob read", conv, fromC.ID))
	alice.say("quit")
	done := make(chan error, 1)
	go func() { done <- alice.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("chat-cli: %v", err)
		}
	case <-time.After(T):
		t.Fatal("chat-cli did not quit")
	}
}
