package chat

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildFlags are the flags the test binary was built with that programs
// it builds need too (see asan_test.go).
var buildFlags []string

// examples/go builds and two copies of it chat through chatd, as the
// README tells a newcomer to do.
func TestExampleTwoUserChat(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds examples/go")
	}
	d := newChatd(t)
	bin := filepath.Join(t.TempDir(), "example")
	build := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", bin, ".")...)
	build.Dir = filepath.Join("..", "..", "examples", "go")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/go: %v\n%s", err, out)
	}
	type proc struct {
		cmd   *exec.Cmd
		in    io.WriteCloser
		lines chan string
	}
	start := func(user, with string) *proc {
		p := &proc{lines: make(chan string, 100)}
		p.cmd = exec.Command(bin, "-url", d.url(), "-token", d.token(user, "term", 3600), "-with", with)
		p.cmd.Stderr = os.Stderr
		p.in, _ = p.cmd.StdinPipe()
		out, _ := p.cmd.StdoutPipe()
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			for sc := bufio.NewScanner(out); sc.Scan(); {
				p.lines <- sc.Text()
			}
			close(p.lines)
		}()
		t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
		return p
	}
	expect := func(p *proc, want string) {
		t.Helper()
		timeout := time.After(T)
		for {
			select {
			case l, ok := <-p.lines:
				if !ok {
					t.Fatalf("the example exited before printing %q", want)
				}
				if strings.Contains(l, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q within %v", want, T)
			}
		}
	}
	alice := start("alice", "bob")
	bob := start("bob", "alice")
	expect(alice, "chatting with bob")
	expect(bob, "chatting with alice")
	fmt.Fprintln(alice.in, "hello bob")
	expect(bob, "alice: hello bob")
	expect(alice, "(bob read)")
	fmt.Fprintln(bob.in, "hi alice")
	expect(alice, "bob: hi alice")
	for _, p := range []*proc{alice, bob} {
		p.in.Close() // EOF: the example closes its client and exits
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("example exit: %v", err)
		}
	}
}
