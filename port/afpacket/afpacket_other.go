//go:build !linux

package afpacket

import (
	"errors"

	"github.com/snf-dev/snf/packet"
)

// Port is a live interface's frames: Linux only (Open fails elsewhere).
type Port struct{}

var errLinux = errors.New("afpacket: live interfaces (AF_PACKET) need Linux")

// Open fails: AF_PACKET is Linux's.
func Open(iface string, o Options) (*Port, error) { return nil, errLinux }

func (p *Port) Read(pkts []packet.Packet) (int, error)               { return 0, errLinux }
func (p *Port) Write(pkts []*packet.Packet) error                    { return errLinux }
func (p *Port) Rereadable() bool                                     { return false }
func (p *Port) Reread(dst []byte, pos uint64, n int) ([]byte, error) { return dst, errLinux }
func (p *Port) Release(pos uint64)                                   {}
func (p *Port) Holds() int                                           { return 0 }
func (p *Port) Waited() bool                                         { return false }
func (p *Port) LinkType() uint32                                     { return linkTypeEthernet }
func (p *Port) Stop()                                                {}
func (p *Port) Stats() Stats                                         { return Stats{} }
func (p *Port) Close() error                                         { return nil }
