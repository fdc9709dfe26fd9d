package snf

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/snf-dev/snf/flowtable"
	"github.com/snf-dev/snf/packet"
)

// Checkpoints. With ChainOptions.Checkpoints, a chain keeps track of the state its packets
// changed — the flows they touched, the Scoped values NFs reached, the flows and keys that
// ended — and Checkpoint writes it out as one self-contained record: everything needed, on
// top of the earlier records, to rebuild the chain's state as of the last packet processed.
// The runtime writes these records to the store in the background (the write-back of
// Scoped state, and the checkpoints recovery restores from); Restore applies them to a
// fresh chain of the same spec.
//
// Tracking costs one comparison per packet (and per Scoped access) and an append the first
// time a flow or value is touched after a checkpoint.

// checkpointMagic starts every record (and versions the format).
var checkpointMagic = [4]byte{'S', 'N', 'F', 'K'}

const checkpointVersion = 2 // 2: the chain's counters

// ckTrack is a chain's change tracking.
type ckTrack struct {
	on    bool
	epoch uint32       // current epoch (1 after the first checkpoint; 0 never marks)
	mark  []uint32     // by flow index: the epoch the flow was last recorded dirty in
	dirty []int32      // flow indices touched in this epoch
	gone  []packet.Key // flows that left the chain in this epoch
}

// scopedCk is the chain's untyped view of a Scoped state, for checkpoints.
type scopedCk interface {
	ckName() string
	// appendChanges appends the state's changes since the last call (all of it if full)
	// and forgets them.
	appendChanges(b []byte, full bool) ([]byte, error)
	// applyChanges applies what appendChanges wrote.
	applyChanges(b []byte) error
}

func (c *Chain) trackFlow(i int32) {
	t := &c.ck
	if int(i) >= len(t.mark) {
		t.mark = append(t.mark, make([]uint32, int(i)+1-len(t.mark)+len(t.mark)/2)...)
	}
	if t.mark[i] != t.epoch {
		t.mark[i] = t.epoch
		t.dirty = append(t.dirty, i)
	}
}

// Checkpoint appends to b a record of the chain's state changes since the previous
// Checkpoint (with full, of all its state) and returns it with the clock of the last packet
// the record reflects. Restoring, in order, a full record and the records after it rebuilds
// the state. It fails when the chain was built without ChainOptions.Checkpoints or a value
// cannot be encoded; the changes are then kept for the next call.
func (c *Chain) Checkpoint(b []byte, full bool) ([]byte, uint64, error) {
	t := &c.ck
	if !t.on {
		return b, 0, errors.New("snf: checkpoint: the chain does not track changes (ChainOptions.Checkpoints)")
	}
	start := len(b)
	b = append(b, checkpointMagic[:]...)
	b = append(b, checkpointVersion)
	b = binary.BigEndian.AppendUint64(b, c.lastClock)
	if full {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	// The count of operations caused outside packets: a restored chain goes on with the
	// same store tags as the original (a replay's expiries are then deduplicated).
	b = binary.BigEndian.AppendUint32(b, c.expireOps)
	gone := t.gone
	if full {
		gone = nil
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(gone)))
	for i := range gone {
		b = appendKey(b, &gone[i])
	}
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	n := 0
	var err error
	exp := func(f *flowtable.Flow) bool {
		lenAt := len(b)
		b = append(b, 0, 0, 0, 0)
		if b, err = c.exportFlow(f, b); err != nil {
			return false
		}
		binary.BigEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
		if n++; n%workChunk == 0 {
			c.work.Add(1)
		}
		return true
	}
	if full {
		c.table.Range(exp)
	} else {
		for _, i := range t.dirty {
			if f := c.table.Flow(i); f.Live() && t.mark[i] == t.epoch {
				if !exp(f) {
					break
				}
			}
		}
	}
	if err != nil {
		return b[:start], 0, err
	}
	binary.BigEndian.PutUint32(b[at:], uint32(n))
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.scoped)))
	for _, s := range c.scoped {
		name := s.ckName()
		b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
		b = append(b, name...)
		lenAt := len(b)
		b = append(b, 0, 0, 0, 0)
		if b, err = s.appendChanges(b, full); err != nil {
			return b[:start], 0, fmt.Errorf("snf: checkpoint: %s: %w", name, err)
		}
		binary.BigEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
		c.work.Add(1)
	}
	b = c.appendCounters(b)
	t.dirty, t.gone = t.dirty[:0], t.gone[:0]
	t.epoch++
	if t.epoch == 0 { // wrapped: old marks could collide with new epochs
		clear(t.mark)
		t.epoch = 1
	}
	return b, c.lastClock, nil
}

// CheckpointClock returns the clock a record written by Checkpoint reflects, and whether
// it is a full one.
func CheckpointClock(rec []byte) (clock uint64, full bool, err error) {
	if len(rec) < 18 || [4]byte(rec[:4]) != checkpointMagic {
		return 0, false, errors.New("snf: not a checkpoint record")
	}
	if rec[4] != checkpointVersion {
		return 0, false, fmt.Errorf("snf: checkpoint record version %d, this build reads %d", rec[4], checkpointVersion)
	}
	return binary.BigEndian.Uint64(rec[5:]), rec[13] == 1, nil
}

// Restore applies a record written by Checkpoint (by a chain of the same spec) to this
// chain: flows that ended are removed, changed flows replace their older versions, Scoped
// values are set or deleted — all without FlowEnd hooks (the record is the state, not
// events). Flows are known by their Key: a flow that took over another's key (a NAT's
// alias) does not go in its place, and a restored flow takes its keys over from the flows
// that hold them. (An older version left with none of its keys is not found: it stays
// until it expires.) A full record first clears the chain's flows. Restore checks the
// whole record before it changes anything about the flows; a bad Scoped section fails
// after the flows were applied (the error says so).
func (c *Chain) Restore(rec []byte) error {
	r, err := c.parseRecord(rec)
	if err != nil {
		return err
	}
	return c.applyRecord(&r, recordPlan{})
}

// RestoreAll applies records, a full one and those written after it, in order, as Restore
// one after the other would; but it checks them all before it changes anything, and it
// imports only the flow versions no later record replaces (so a malformed version that a
// later one replaces goes unnoticed). (A recovery restores a unit's
// records since its last full one; at full speed most of its flows are in every record.)
//
// A version is left out when the flow's next version, in a later record, has the same alias
// key (or none): the next one takes over the same keys from whichever flows hold them then,
// so the table ends as if both were imported. A version whose flow ends in a later record,
// or changes its alias, is imported, for the keys it takes over; so is every version of a
// Key a record lists twice (two flows: one whose key was taken over, one made with it
// after). Versions before a full record are all left out: the full record drops every
// flow. (TestRestoreCollisions checks both ways against the chain that wrote the records.)
// One case differs from Restore one by one: records without a full one, restored into a
// chain that ran traffic of its own and holds two flows of one Key; a version left out
// there leaves one of them where Restore would drop both. A recovery always restores from
// a full record into a new chain.
func (c *Chain) RestoreAll(recs [][]byte) error {
	parsed := make([]ckRecord, len(recs))
	for i, rec := range recs {
		var err error
		if parsed[i], err = c.parseRecord(rec); err != nil {
			return fmt.Errorf("record %d of %d: %w", i+1, len(recs), err)
		}
	}
	plan := superseded(parsed)
	c.table.Reserve(plan.imports, plan.aliases) // (once: each record's own would grow the table again)
	for i := range parsed {
		if err := c.applyRecord(&parsed[i], plan.recs[i]); err != nil {
			return fmt.Errorf("record %d of %d: %w", i+1, len(recs), err)
		}
	}
	return nil
}

// restorePlan is what RestoreAll does with each record's flow versions and gone keys.
type restorePlan struct {
	recs             []recordPlan
	imports, aliases int // versions to import, and how many of them have an alias key
}

// recordPlan says, by flow version, whether a later record replaces it (skip), and, by
// flow version and gone key, whether a flow with that Key may be in the table when the
// record comes (drop): the event just before it for the same Key was an imported version.
// Nil slices: import every version, look up every key (Restore).
type recordPlan struct {
	skip, drop, dropGone []bool
}

// superseded plans RestoreAll: which flow versions a later record replaces, and which keys
// need a look-up to drop an older version. After a full record, only imports make flows,
// and each Key-k flow imported holds k and its reverse from then on, so at most one flow
// with Key k — the latest imported — can be found: a Key's look-up is needed only when the
// event just before it for the Key (a version or a gone key) was an imported version, and
// the first event since the full record finds none. Without a full record first the table
// may hold flows of its own (two with one Key, one holding k and one its reverse): every
// look-up is kept. So is every one of a Key a record lists twice.
func superseded(recs []ckRecord) (p restorePlan) {
	type event struct {
		version, hasAlias bool
		alias             packet.Key
		rec, idx          int32
	}
	p.recs = make([]recordPlan, len(recs))
	if len(recs) < 2 {
		return p // (nothing to leave out; the record reserves its own room)
	}
	lastFull, n := 0, 0
	for i := range recs {
		if recs[i].full {
			lastFull = i
		}
		n += len(recs[i].flows)
	}
	cleared := recs[lastFull].full
	next := make(map[packet.Key]event, n) // by Key: its next event, going back in time
	var twice map[packet.Key]bool         // keys a record lists twice: two flows (see below)
	// mark records, at the event after a version, whether that version was imported.
	mark := func(nx event, imported bool) {
		if !cleared {
			return // (every look-up stays)
		}
		if nx.version {
			p.recs[nx.rec].drop[nx.idx] = imported
		} else {
			p.recs[nx.rec].dropGone[nx.idx] = imported
		}
	}
	for j := len(recs) - 1; j >= 0; j-- {
		r, rp := &recs[j], &p.recs[j]
		rp.skip = make([]bool, len(r.flows))
		if j < lastFull {
			for i := range rp.skip {
				rp.skip[i] = true
			}
			continue
		}
		if cleared { // (else nil: every look-up stays)
			rp.drop, rp.dropGone = make([]bool, len(r.flows)), make([]bool, len(r.gone))
		}
		for i, fb := range r.flows {
			k, rest, ok := readKey(fb)
			if !ok {
				p.imports++
				continue // (its import fails, as Restore's would)
			}
			ev := event{version: true, rec: int32(j), idx: int32(i)}
			ev.alias, ev.hasAlias = exportedAlias(rest)
			nx, seen := next[k]
			if seen && nx.rec == int32(j) && nx.version {
				// Two flows with one Key: one whose key another took over, and one made with
				// it after. Which later version is whose is not known: keep them all.
				if twice == nil {
					twice = map[packet.Key]bool{}
				}
				twice[k] = true
			}
			imported := true
			if seen && nx.version && nx.hasAlias == ev.hasAlias && nx.alias == ev.alias {
				rp.skip[i], imported = true, false
			} else {
				p.imports++
				if ev.hasAlias {
					p.aliases++
				}
			}
			if seen {
				mark(nx, imported)
			}
			next[k] = ev
		}
		for i, g := range r.gone { // (before the record's versions)
			if nx, seen := next[g]; seen {
				mark(nx, false) // (the gone key's drop removed the flow)
			}
			next[g] = event{rec: int32(j), idx: int32(i)}
		}
	}
	if twice == nil {
		return p
	}
	for j := lastFull; j < len(recs); j++ { // a twice-listed Key's versions all go in
		rp := &p.recs[j]
		for i, fb := range recs[j].flows {
			k, rest, ok := readKey(fb)
			if !ok || !twice[k] {
				continue
			}
			if rp.drop != nil {
				rp.drop[i] = true
			}
			if rp.skip[i] {
				rp.skip[i] = false
				p.imports++
				if _, has := exportedAlias(rest); has {
					p.aliases++
				}
			}
		}
		for i, g := range recs[j].gone {
			if twice[g] && rp.dropGone != nil {
				rp.dropGone[i] = true
			}
		}
	}
	return p
}

// ckRecord is a checkpoint record, parsed and checked.
type ckRecord struct {
	clock     uint64
	full      bool
	expireOps uint32
	gone      []packet.Key
	flows     [][]byte
	secs      []ckSection
	counters  []uint64
}

type ckSection struct {
	s    scopedCk
	data []byte
}

// parseRecord parses and checks a record Checkpoint wrote, for this chain's spec.
func (c *Chain) parseRecord(rec []byte) (ckRecord, error) {
	var none ckRecord
	clock, full, err := CheckpointClock(rec)
	if err != nil {
		return none, err
	}
	expireOps := binary.BigEndian.Uint32(rec[14:])
	b := rec[18:]
	trunc := errors.New("snf: restore: record truncated")
	if len(b) < 4 {
		return none, trunc
	}
	ng := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	if ng > len(b)/keyLen {
		return none, trunc
	}
	gone := make([]packet.Key, ng)
	for i := range gone {
		var ok bool
		if gone[i], b, ok = readKey(b); !ok {
			return none, errors.New("snf: restore: bad flow key")
		}
	}
	if len(b) < 4 {
		return none, trunc
	}
	nf := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	flows := make([][]byte, 0, min(nf, len(b)/4))
	for range nf {
		if len(b) < 4 {
			return none, trunc
		}
		n := int(binary.BigEndian.Uint32(b))
		if n > len(b)-4 {
			return none, trunc
		}
		flows = append(flows, b[4:4+n])
		b = b[4+n:]
	}
	if len(b) < 4 {
		return none, trunc
	}
	ns := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	var secs []ckSection
	for range ns {
		if len(b) < 2 {
			return none, trunc
		}
		nl := int(binary.BigEndian.Uint16(b))
		if nl > len(b)-2-4 {
			return none, trunc
		}
		name := string(b[2 : 2+nl])
		b = b[2+nl:]
		n := int(binary.BigEndian.Uint32(b))
		if n > len(b)-4 {
			return none, trunc
		}
		var s scopedCk
		for _, x := range c.scoped {
			if x.ckName() == name {
				s = x
			}
		}
		if s == nil {
			return none, fmt.Errorf("snf: restore: the chain has no scoped state %q (another spec?)", name)
		}
		secs = append(secs, ckSection{s, b[4 : 4+n]})
		b = b[4+n:]
	}
	counters, b, err := c.readCounters(b)
	if err != nil {
		return none, err
	}
	if len(b) != 0 {
		return none, fmt.Errorf("snf: restore: %d trailing bytes", len(b))
	}
	return ckRecord{clock: clock, full: full, expireOps: expireOps, gone: gone, flows: flows, secs: secs, counters: counters}, nil
}

// applyRecord applies a parsed record (Restore); plan's slices, if not nil, leave out the
// imports of the flow versions a later record replaces (skip), and the look-ups of older
// versions no earlier record put in the table (drop, dropGone): RestoreAll's plan.
func (c *Chain) applyRecord(r *ckRecord, plan recordPlan) error {
	skip := plan.skip
	gone, flows := r.gone, r.flows
	if r.full { // every flow goes (by flow: one may hold no key of its own)
		var all []int32
		c.table.Range(func(f *flowtable.Flow) bool { all = append(all, f.Index()); return true })
		for _, i := range all {
			c.detachFlow(c.table.Flow(i))
		}
	}
	for i := range gone {
		if plan.dropGone == nil || plan.dropGone[i] {
			c.dropFlow(gone[i])
		}
	}
	// The record's flows replace their older versions, which go first, silently: the room
	// they free is what Reserve counts on (a recovery restores several records, most of
	// whose flows replace ones restored before).
	imports, aliases := 0, 0
	empty := c.table.Stats().Active == 0 // (a fresh chain, or after a full record's clear)
	for i, fb := range flows {
		if k, rest, ok := readKey(fb); ok {
			if !empty && (plan.drop == nil || plan.drop[i]) {
				c.dropFlow(k)
			}
			if skip != nil && skip[i] {
				continue
			}
			if _, has := exportedAlias(rest); has {
				aliases++
			}
		}
		imports++
	}
	c.table.Reserve(imports, aliases)
	var err error
	// They come in no time order (an incremental record lists them as first touched): the
	// table sorts its lists once.
	c.table.Bulk(func() {
		for i, fb := range flows {
			if skip != nil && skip[i] {
				continue
			}
			if err = c.importFlow(fb, true); err != nil {
				err = fmt.Errorf("snf: restore: %w", err)
				return
			}
		}
	})
	if err != nil {
		return err
	}
	for _, sec := range r.secs {
		if err := sec.s.applyChanges(sec.data); err != nil {
			return fmt.Errorf("snf: restore: %s (the flows were restored): %w", sec.s.ckName(), err)
		}
	}
	c.setCounters(r.counters)
	c.lastClock = max(c.lastClock, r.clock)
	c.expireOps = max(c.expireOps, r.expireOps)
	// What was restored is durable already: the next record starts from here.
	c.ck.dirty, c.ck.gone = c.ck.dirty[:0], c.ck.gone[:0]
	c.ck.epoch++
	return nil
}

// The chain's counters (ChainStats, each NF's NFStats and metrics) end every record, as of
// its last packet: a restored chain counts on from there, so that the packets a recovery
// replays after the record are counted (and billed) once, as one chain counts them.
// They are totals, not changes: the last record restored sets them.

// appendCounters appends the chain's counters to b.
func (c *Chain) appendCounters(b []byte) []byte {
	s := &c.stats
	for _, v := range [...]uint64{s.In, s.Out, s.Dropped, s.Emitted, s.Alerts, s.EmitLost, s.NonIP, s.Malformed} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.nfs)))
	for _, n := range c.nfs {
		for _, v := range [...]uint64{n.stats.In, n.stats.Dropped, n.stats.Emitted, n.stats.Alerts} {
			b = binary.BigEndian.AppendUint64(b, v)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(n.metrics)))
		for _, m := range n.metrics {
			b = binary.BigEndian.AppendUint64(b, m.v)
		}
	}
	return b
}

// readCounters reads what appendCounters wrote (for this chain's spec) into a flat list, in
// the order setCounters takes it, and returns the rest of b.
func (c *Chain) readCounters(b []byte) ([]uint64, []byte, error) {
	trunc := errors.New("snf: restore: record truncated (counters)")
	var vs []uint64
	take := func(n int) bool {
		if len(b) < 8*n {
			return false
		}
		for range n {
			vs = append(vs, binary.BigEndian.Uint64(b))
			b = b[8:]
		}
		return true
	}
	if !take(8) || len(b) < 2 {
		return nil, b, trunc
	}
	if n := int(binary.BigEndian.Uint16(b)); n != len(c.nfs) {
		return nil, b, fmt.Errorf("snf: restore: the record counts %d NFs, the chain has %d (another spec?)", n, len(c.nfs))
	}
	b = b[2:]
	for _, n := range c.nfs {
		if !take(4) || len(b) < 2 {
			return nil, b, trunc
		}
		if k := int(binary.BigEndian.Uint16(b)); k != len(n.metrics) {
			return nil, b, fmt.Errorf("snf: restore: the record has %d metrics for %s, the chain %d (another spec?)", k, n.name, len(n.metrics))
		}
		b = b[2:]
		if !take(len(n.metrics)) {
			return nil, b, trunc
		}
	}
	return vs, b, nil
}

// setCounters sets the chain's counters from what readCounters read.
func (c *Chain) setCounters(vs []uint64) {
	s := &c.stats
	s.In, s.Out, s.Dropped, s.Emitted, s.Alerts, s.EmitLost, s.NonIP, s.Malformed = vs[0], vs[1], vs[2], vs[3], vs[4], vs[5], vs[6], vs[7]
	vs = vs[8:]
	for _, n := range c.nfs {
		n.stats = NFStats{In: vs[0], Dropped: vs[1], Emitted: vs[2], Alerts: vs[3]}
		vs = vs[4:]
		for _, m := range n.metrics {
			m.v, vs = vs[0], vs[1:]
		}
	}
}

// dropFlow removes the flow whose Key is k, if any, without FlowEnd hooks: found by k or its
// reply key, not a flow that took k over.
func (c *Chain) dropFlow(k packet.Key) {
	if f, ok := c.table.FindFlow(k); ok {
		c.detachFlow(f)
	}
}

// detachFlow removes flow f silently: its values freed, no FlowEnd hooks.
func (c *Chain) detachFlow(f *flowtable.Flow) {
	slots := c.table.Slots(f.Index())
	for s, i := range slots {
		if i >= 0 {
			c.slots[s].release(i)
			slots[s] = -1
		}
	}
	c.table.Detach(f)
}

// keyCodec encodes the keys of a Scoped state: through their own binary methods, or as
// their memory when they hold no pointers (arrays, structs of numbers and bools).
type keyCodec[K comparable] struct {
	raw  bool
	size int
}

func newKeyCodec[K comparable]() (keyCodec[K], error) {
	var k K
	if _, ok := any(k).(encoding.BinaryMarshaler); ok {
		if _, ok := any(&k).(encoding.BinaryUnmarshaler); ok {
			return keyCodec[K]{}, nil
		}
	}
	t := reflect.TypeFor[K]()
	if !pointerFree(t) {
		return keyCodec[K]{}, fmt.Errorf("key type %s holds pointers: give it MarshalBinary and UnmarshalBinary methods", t)
	}
	return keyCodec[K]{raw: true, size: int(t.Size())}, nil
}

func pointerFree(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return pointerFree(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !pointerFree(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// appendKey appends k, length-prefixed (2 bytes).
func (kc keyCodec[K]) appendKey(b []byte, k *K) ([]byte, error) {
	at := len(b)
	b = append(b, 0, 0)
	if kc.raw {
		b = append(b, unsafe.Slice((*byte)(unsafe.Pointer(k)), kc.size)...)
	} else {
		m, err := any(*k).(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return b[:at], err
		}
		b = append(b, m...)
	}
	if len(b)-at-2 > 0xffff {
		return b[:at], errors.New("key longer than 64 KiB")
	}
	binary.BigEndian.PutUint16(b[at:], uint16(len(b)-at-2))
	return b, nil
}

// readKey reads what appendKey wrote.
func (kc keyCodec[K]) readKey(b []byte) (k K, rest []byte, err error) {
	if len(b) < 2 {
		return k, b, errors.New("truncated key")
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > len(b)-2 {
		return k, b, errors.New("truncated key")
	}
	kb := b[2 : 2+n]
	if kc.raw {
		if n != kc.size {
			return k, b, fmt.Errorf("key of %d bytes, want %d", n, kc.size)
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&k)), kc.size), kb)
	} else if err := any(&k).(encoding.BinaryUnmarshaler).UnmarshalBinary(kb); err != nil {
		return k, b, err
	}
	return k, b[2+n:], nil
}
