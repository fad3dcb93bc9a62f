package chat

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestCodecDecodeEncode(t *testing.T) {
	t.Parallel()
	in := `{"type":"send","client_msg_id":"c1","conversation_id":"conv1","body":"h\u00e9\u0000llo","reply_to":"42","media_refs":["m1","m2"],"body_type":"media"}`
	f, err := Decode(ToServer, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &SendFrame{ClientMsgID: "c1", ConversationID: "conv1", Body: "hé\x00llo", HasReplyTo: true, ReplyTo: 42,
		MediaRefs: []string{"m1", "m2"}, BodyType: BodyMedia}
	if f.Type != FrameSend || f.Type.String() != "send" || !reflect.DeepEqual(f.Send, want) {
		t.Fatalf("decoded %+v", f.Send)
	}
	out, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Decode(ToServer, out)
	if err != nil || !reflect.DeepEqual(g, f) {
		t.Fatalf("round trip: %s -> %+v %v", out, g, err)
	}
	// A frame of the other direction is refused.
	if _, err := Decode(ToClient, []byte(in)); !errors.Is(err, ErrUnknownType) || !errors.Is(err, ErrDecode) {
		t.Fatalf("wrong direction: %v", err)
	}
}

func TestCodecErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in    string
		code  Code
		field string
		wire  WireCode
	}{
		{`{"type":"send","conversation_id":"c","body":"x"}`, ErrMissingField, "client_msg_id", WireBadFrame},
		{`not json`, ErrJSON, "", WireBadFrame},
		{`[1]`, ErrNotObject, "", WireBadFrame},
		{`{"type":"read","conversation_id":"bad id!","up_to_message_id":"1"}`, ErrBadID, "conversation_id", WireBadID},
		{`{"type":"read","conversation_id":"c","up_to_message_id":"01"}`, ErrBadMessageID, "up_to_message_id", WireBadID},
		{"{\"type\":\"typing\",\"conversation_id\":\"c\",\"is_typing\":\xff}", ErrBadUTF8, "", WireBadFrame},
		{`{"type":"nope"}`, ErrUnknownType, "type", WireUnknownType},
	}
	for _, c := range cases {
		_, err := Decode(ToServer, []byte(c.in))
		var ce *Error
		if !errors.As(err, &ce) || !errors.Is(err, c.code) || !errors.Is(err, ErrDecode) || errors.Is(err, ErrInval) {
			t.Fatalf("%s: %v, want %v (%+v)", c.in, err, c.code, ce)
		}
		if ce.Name != c.code.Name() || ce.Field != c.field || ce.Wire != c.wire || ce.Detail == "" {
			t.Fatalf("%s: field %q wire %q detail %q", c.in, ce.Field, ce.Wire, ce.Detail)
		}
		if !strings.Contains(err.Error(), ce.Name) || !strings.Contains(err.Error(), ce.Detail) {
			t.Fatalf("message %q", err.Error())
		}
	}
	// Encoding validates as strictly as decoding.
	_, err := Encode(&Frame{Type: FrameSend, Send: &SendFrame{ClientMsgID: "c1", ConversationID: "no spaces"}})
	if !errors.Is(err, ErrBadID) {
		t.Fatalf("encode bad id: %v", err)
	}
	_, err = Encode(&Frame{Type: FrameSend})
	if !errors.Is(err, ErrInval) {
		t.Fatalf("encode without payload: %v", err)
	}
	if ErrTooLarge.Name() != "CHAT_ERR_TOO_LARGE" || !errors.Is(error(ErrTooLarge), ErrTooLarge) {
		t.Fatal("sentinels")
	}
}

// Every frame of the fuzz corpora that decodes encodes back to a frame
// that decodes to the same value: the Go <-> C conversions lose nothing.
func TestCodecRoundTripCorpus(t *testing.T) {
	t.Parallel()
	n := 0
	for dir, sub := range map[Direction]string{ToServer: "fuzz_decode_to_server", ToClient: "fuzz_decode_to_client"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", "fuzz", "corpus", sub, "*"))
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Decode(dir, data)
			if err != nil {
				continue
			}
			out, err := Encode(f)
			if err != nil {
				t.Fatalf("%s: encode: %v", p, err)
			}
			g, err := Decode(dir, out)
			if err != nil || !reflect.DeepEqual(f, g) {
				t.Fatalf("%s: round trip\n%s\n%+v\n%+v\n%v", p, out, f, g, err)
			}
			n++
		}
	}
	if n < 20 {
		t.Skipf("only %d corpus frames decode (corpus not found?)", n)
	}
	t.Logf("%d frames round-tripped", n)
}
