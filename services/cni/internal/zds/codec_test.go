package zds

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

func TestDecodeHello(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want string // error substring; "" for success
	}{
		{"v1", []byte{0x08, 0x01}, ""},
		{"v1 with unknown field", []byte{0x08, 0x01, 0x12, 0x01, 'x'}, ""},
		{"v1 twice, last wins", []byte{0x08, 0x02, 0x08, 0x01}, ""},
		{"empty", nil, "unsupported ZDS version NOT_USED"},
		{"not used", []byte{0x08, 0x00}, "unsupported ZDS version NOT_USED"},
		{"future version", []byte{0x08, 0x07}, "unsupported ZDS version 7"},
		{"negative version", []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "unsupported ZDS version -1"},
		{"wrong wire type is an unknown field", []byte{0x0a, 0x01, 0x01}, "unsupported ZDS version NOT_USED"},
		{"truncated varint", []byte{0x08, 0x80}, "malformed message: ZdsHello"},
		{"field zero", []byte{0x00, 0x01}, "malformed message: ZdsHello"},
		{"deep groups", []byte(strings.Repeat("\x1b", 100)), "malformed message: ZdsHello"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := decodeHello(tc.in)
			if tc.want == "" {
				if err != nil || h.GetVersion() != zdspb.Version_V1 {
					t.Fatalf("decodeHello = %v, %v", h, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeHello = %v, %v; want error %q", h, err, tc.want)
			}
		})
	}
}

func TestDecodeResponse(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		wantAck string
		want    string
	}{
		{"ack ok", []byte{0x0a, 0x00}, "", ""},
		{"ack error", []byte{0x0a, 0x06, 0x0a, 0x04, 'b', 'o', 'o', 'm'}, "boom", ""},
		{"ack with unknown field", []byte{0x0a, 0x02, 0x10, 0x01}, "", ""},
		{"empty", nil, "", "without ack"},
		{"unknown payload", []byte{0x12, 0x00}, "", "without ack"},
		{"invalid utf-8", []byte{0x0a, 0x03, 0x0a, 0x01, 0xff}, "", "malformed message: WorkloadResponse"},
		{"length past end", []byte{0x0a, 0x05}, "", "malformed message: WorkloadResponse"},
		{"garbage", []byte{0xff, 0xff, 0xff}, "", "malformed message: WorkloadResponse"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ack, err := decodeResponse(tc.in)
			if tc.want == "" {
				if err != nil || ack == nil || ack.GetError() != tc.wantAck {
					t.Fatalf("decodeResponse = %v, %v; want ack %q", ack, err, tc.wantAck)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeResponse = %v, %v; want error %q", ack, err, tc.want)
			}
		})
	}
}

// FuzzDecodeHello: decodeHello never panics, fails only with its own
// error kinds, and accepts only V1, stably across a re-encode.
func FuzzDecodeHello(f *testing.F) {
	f.Add([]byte{0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHello(b)
		if err != nil {
			if h != nil || !(errors.Is(err, errMalformed) || errors.Is(err, errVersion)) {
				t.Fatalf("decodeHello(%x) = %v, %v", b, h, err)
			}
			return
		}
		if h.GetVersion() != zdspb.Version_V1 {
			t.Fatalf("accepted version %v", h.GetVersion())
		}
		re, err := proto.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		if h2, err := decodeHello(re); err != nil || !proto.Equal(h, h2) {
			t.Fatalf("re-encoded hello %x decodes to %v, %v", re, h2, err)
		}
	})
}

// FuzzDecodeResponse: decodeResponse never panics, fails only as
// malformed, and an accepted ack survives a re-encode.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		ack, err := decodeResponse(b)
		if err != nil {
			if ack != nil || !errors.Is(err, errMalformed) {
				t.Fatalf("decodeResponse(%x) = %v, %v", b, ack, err)
			}
			return
		}
		if ack == nil {
			t.Fatal("nil ack without error")
		}
		re, err := proto.Marshal(&zdspb.WorkloadResponse{Payload: &zdspb.WorkloadResponse_Ack{Ack: ack}})
		if err != nil {
			t.Fatal(err)
		}
		if ack2, err := decodeResponse(re); err != nil || ack2.GetError() != ack.GetError() {
			t.Fatalf("re-encoded ack %x decodes to %v, %v", re, ack2, err)
		}
	})
}
