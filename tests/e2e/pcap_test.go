//go:build e2e

package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
)

// tcpSegment is one captured TCP segment with a payload.
type tcpSegment struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// readPcap reads the IPv4 TCP segments with payload from a classic pcap
// file written by tcpdump on an Ethernet link. Small on purpose: the test
// only needs to look at payload bytes.
func readPcap(path string) ([]tcpSegment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr := make([]byte, 24)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, errors.New("not a pcap file")
	}
	if lt := bo.Uint32(hdr[20:]); lt != 1 {
		return nil, fmt.Errorf("link type %d, want Ethernet", lt)
	}
	var out []tcpSegment
	rec := make([]byte, 16)
	for {
		if _, err := io.ReadFull(f, rec); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil
			}
			return nil, err
		}
		n := bo.Uint32(rec[8:])
		pkt := make([]byte, n)
		if _, err := io.ReadFull(f, pkt); err != nil {
			return out, nil // a capture cut short at the end
		}
		if seg, ok := parseTCP(pkt); ok {
			out = append(out, seg)
		}
	}
}

func parseTCP(pkt []byte) (tcpSegment, bool) {
	if len(pkt) < 14+20 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
		return tcpSegment{}, false
	}
	ip := pkt[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[9] != 6 || ihl < 20 || total > len(ip) || total < ihl+20 {
		return tcpSegment{}, false
	}
	tcp := ip[ihl:total]
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return tcpSegment{}, false
	}
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	return tcpSegment{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:])),
		Payload: tcp[off:],
	}, len(tcp) > off
}
