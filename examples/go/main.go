// A two-user terminal chat on libchat's Go binding (bindings/go/README.md).
// Run it twice, as alice with -with bob and as bob with -with alice:
//
//	go run . -url ws://127.0.0.1:8080 -token "$ALICE" -with bob
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"

	"libchat/chat"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080", "the chat server")
	token := flag.String("token", os.Getenv("CHAT_TOKEN"), "bearer token (chatd token ...)")
	with := flag.String("with", "", "the user to chat with")
	store := flag.String("store", "", "local store file (default: in memory)")
	flag.Parse()
	ctx := context.Background()

	c, err := chat.Dial(ctx, chat.Config{URL: *url, Token: *token, StorePath: *store})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	conv, err := c.CreateConversation(ctx, "", *with) // the same chat for both
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("chatting with %s; type a line and press enter\n", *with)
	go func() {
		for ev := range c.Events() {
			switch e := ev.(type) {
			case chat.MessageEvent:
				fmt.Printf("%s: %s\n", e.SenderID, e.Body)
				c.MarkRead(ctx, conv.ID, e.ID)
			case chat.ReceiptEvent:
				fmt.Printf("  (%s %s)\n", e.MemberID, e.State)
			}
		}
	}()
	for in := bufio.NewScanner(os.Stdin); in.Scan(); {
		if _, err := c.Send(ctx, conv.ID, in.Text()); err != nil {
			log.Print(err)
		}
	}
}
