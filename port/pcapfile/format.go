package pcapfile

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Format is a capture file format.
type Format uint8

const (
	// FormatPcap is the classic libpcap format. The Writer writes it little-endian with
	// nanosecond timestamps, so that any timestamp round-trips exactly.
	FormatPcap Format = iota
	// FormatPcapNG is pcapng. The Writer writes one section with one interface at
	// nanosecond resolution.
	FormatPcapNG
)

// String returns "pcap" or "pcapng".
func (f Format) String() string {
	switch f {
	case FormatPcap:
		return "pcap"
	case FormatPcapNG:
		return "pcapng"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// ParseFormat parses "pcap" or "pcapng" (case-insensitive).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "pcap":
		return FormatPcap, nil
	case "pcapng":
		return FormatPcapNG, nil
	}
	return 0, fmt.Errorf("pcapfile: unknown capture format %q (want pcap or pcapng)", s)
}

// FormatFromName picks the format for an output file from its name: pcapng for a name
// ending in .pcapng (any case), classic pcap otherwise.
func FormatFromName(path string) Format {
	if strings.EqualFold(filepath.Ext(path), ".pcapng") {
		return FormatPcapNG
	}
	return FormatPcap
}

// MarshalText implements encoding.TextMarshaler.
func (f Format) MarshalText() ([]byte, error) {
	if f > FormatPcapNG {
		return nil, fmt.Errorf("pcapfile: invalid format %d", uint8(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseFormat.
func (f *Format) UnmarshalText(b []byte) error {
	v, err := ParseFormat(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}
