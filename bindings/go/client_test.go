package chat

import (
	"path/filepath"
	"testing"
)

// Two users chat: the message arrives, and the sender sees it delivered
// and then read.
func TestChatdTwoUsersReceipts(t *testing.T) {
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
