package trojan

import (
	"bytes"
	"encoding/binary"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// Connection kinds (conn.kind).
const (
	connNew     uint8 = iota // not looked at yet
	connUnknown              // payload inspected for banners, commands and requests
	connSSH
	connIRC
	connFTP  // an FTP control connection: parsed (parser state)
	connHTTP // parsed (parser state)
	connData // done: a raw download (FTP data) was seen
	connOther
)

// conn flags.
const (
	cfAnswered  uint8 = 1 << iota // the responder has sent a packet
	cfEvent                       // the connection's SSH or IRC event was raised
	cfInitSpoke                   // the initiator has sent payload
	cfRespSpoke                   // the responder has sent payload
	cfBanner                      // the responder's first payload was a numeric or +OK banner
	cfBanner220                   // … and it was 220 (FTP, SMTP)
)

// maxInspect bounds the payload segments looked at on a connection of unknown kind.
const maxInspect = 8

// conn is the per-flow state of every TCP connection of a watched host.
type conn struct {
	kind  uint8
	flags uint8
	segs  uint8
}

func (c *conn) has(f uint8) bool { return c.flags&f != 0 }

func (c *conn) AppendBinary(b []byte) ([]byte, error) { return append(b, c.kind, c.flags, c.segs), nil }

func (c *conn) UnmarshalBinary(b []byte) error {
	if len(b) != 3 || b[0] > connOther {
		return errState("conn", len(b), 3)
	}
	c.kind, c.flags, c.segs = b[0], b[1], b[2]
	return nil
}

func (t *Trojan) classifyByPort(c *conn, dport uint16) {
	switch {
	case t.ssh.has(dport):
		c.kind = connSSH
	case t.irc.has(dport):
		c.kind = connIRC
	case t.ftp.has(dport):
		c.kind = connFTP
	default:
		c.kind = connUnknown
	}
}

// inspect looks at a payload segment of a connection of unknown kind.
func (t *Trojan) inspect(ctx *snf.Context, c *conn, p *packet.Packet, dir int, b []byte) {
	first := dir == 0 && !c.has(cfInitSpoke) || dir == 1 && !c.has(cfRespSpoke)
	if first && isSSHBanner(b) {
		c.kind = connSSH
		t.sshEvent(ctx, c)
		return
	}
	if dir == 0 {
		switch {
		case first && isRequest(b):
			c.kind = connHTTP
			t.parse(ctx, c, p, dir, b)
			return
		case c.has(cfBanner220) && lineWithPrefix(b, "user "):
			c.kind = connFTP
			t.parse(ctx, c, p, dir, b)
			return
		case isIRC(b, !c.has(cfBanner)):
			c.kind = connIRC
			t.ircEvent(ctx, c)
			return
		}
		c.flags |= cfInitSpoke
	} else {
		if first {
			switch {
			case isResponse(b):
				c.kind = connHTTP
				if pr := t.parsers.GetOrCreate(ctx); pr != nil {
					pr.s[0].st = stResync // mid-stream: wait for the next request
				}
				t.parse(ctx, c, p, dir, b)
				return
			case !c.has(cfInitSpoke):
				if k := magic(b); k != 0 {
					c.kind = connData
					t.mData.Inc()
					t.download(ctx, k)
					return
				}
			}
			if isBanner(b) {
				c.flags |= cfBanner
				if bytes.HasPrefix(b, []byte("220")) {
					c.flags |= cfBanner220
				}
			}
		}
		c.flags |= cfRespSpoke
	}
	if c.segs++; c.segs >= maxInspect {
		c.kind = connOther
	}
}

func isSSHBanner(b []byte) bool {
	return len(b) >= 6 && string(b[:4]) == "SSH-" && (b[4] == '1' || b[4] == '2') && b[5] == '.'
}

var methods = [...]string{"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

func isRequest(b []byte) bool {
	for _, m := range methods {
		if len(b) >= len(m) && string(b[:len(m)]) == m {
			return true
		}
	}
	return false
}

func isResponse(b []byte) bool { return len(b) >= 7 && string(b[:7]) == "HTTP/1." }

// isBanner reports a server greeting of a line protocol that is not IRC: three digits
// (FTP, SMTP) or +OK (POP3).
func isBanner(b []byte) bool {
	return len(b) >= 3 && (isDigit(b[0]) && isDigit(b[1]) && isDigit(b[2]) || string(b[:3]) == "+OK")
}

// magic returns the download kind of a file that starts with b: a ZIP local file header
// or a DOS/PE "MZ" header.
func magic(b []byte) uint8 {
	switch {
	case len(b) >= 4 && string(b[:4]) == "PK\x03\x04":
		return kindZIP
	case len(b) >= 2 && string(b[:2]) == "MZ":
		return kindEXE
	}
	return 0
}

// inspectLen bounds how far into a segment lines are looked for.
const inspectLen = 512

// isIRC reports whether a client segment has a line starting with an IRC registration or
// join command: NICK or JOIN, and USER when user is true (USER is also FTP's and POP3's).
func isIRC(b []byte, user bool) bool {
	return lineWithPrefix(b, "nick ") || lineWithPrefix(b, "join ") || user && lineWithPrefix(b, "user ")
}

// lineWithPrefix reports whether a line of b (within inspectLen) starts with prefix,
// compared case-insensitively (prefix is lower case).
func lineWithPrefix(b []byte, prefix string) bool {
	b = b[:min(len(b), inspectLen)]
	for len(b) > 0 {
		if hasPrefixFold(b, prefix) {
			return true
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		b = b[i+1:]
	}
	return false
}

func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower(b[i]) != prefix[i] {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// HTTP message states of a stream.
const (
	stStart      uint8 = iota // a request or status line (empty lines skipped)
	stHeaders                 // header lines until an empty line
	stBody                    // left body bytes (Content-Length)
	stChunkSize               // a chunk-size line
	stChunkData               // left bytes of a chunk
	stChunkEnd                // the CRLF after a chunk
	stTrailer                 // trailer lines until an empty line
	stUntilClose              // a body delimited by the end of the connection
	stResync                  // lost: wait for a segment that starts a message
	numStates
)

// Per-message flags (stream.msg).
const (
	mfLen     uint8 = 1 << iota // Content-Length given
	mfChunked                   // Transfer-Encoding: chunked
	mfMagic                     // the body's first bytes decide the download kind
)

// Content types that matter (stream.ctype).
const (
	ctNone  uint8 = iota // no Content-Type header
	ctHTML               // text/html, application/xhtml+xml
	ctZIP                // application/zip and its aliases
	ctEXE                // application/x-msdownload and its aliases
	ctOctet              // application/octet-stream and other generic binary types
	ctOther
)

// Request hints (FIFO entries): the download kinds named by the request target's file
// extensions, and whether the request was a HEAD.
const hintHead uint8 = 0x80

// lineCap is how much of each line is kept: enough for every header value that matters.
const lineCap = 64

// stream is the parser state of one direction of an HTTP or FTP connection.
type stream struct {
	next   uint32 // the next expected TCP sequence number
	synced bool   // next is set
	broken bool   // the current line lost bytes: it is ignored (FTP)
	st     uint8
	n      uint8 // bytes of the current line kept in line
	line   [lineCap]byte
	roll   uint64 // the last bytes of the current word, lower case (file extensions)
	names  uint8  // download kinds named by file extensions in the current line
	msg    uint8  // mf flags of the current message
	ctype  uint8
	status uint16
	hint   uint8 // the hint of the request this response answers
	mn     uint8 // body bytes in magic
	magic  [4]byte
	left   uint64 // body or chunk bytes left
}

// parser is the per-flow state of HTTP and FTP connections: s[0] is the initiator's
// direction (requests, commands), s[1] the responder's (responses, replies).
type parser struct {
	s          [2]stream
	fifo       [4]uint8 // hints of HTTP requests awaiting their responses
	fifoN      uint8
	fifoHead   uint8
	ftpPending uint8 // download kinds of the FTP RETR awaiting its completion reply
}

func (pr *parser) push(h uint8) {
	if pr.fifoN == uint8(len(pr.fifo)) { // pipelined deeper than we track: drop the oldest
		pr.fifoHead = (pr.fifoHead + 1) % uint8(len(pr.fifo))
		pr.fifoN--
	}
	pr.fifo[(pr.fifoHead+pr.fifoN)%uint8(len(pr.fifo))] = h
	pr.fifoN++
}

func (pr *parser) pop() uint8 {
	if pr.fifoN == 0 {
		return 0
	}
	h := pr.fifo[pr.fifoHead]
	pr.fifoHead = (pr.fifoHead + 1) % uint8(len(pr.fifo))
	pr.fifoN--
	return h
}

// parse feeds a payload segment of an HTTP or FTP connection to its stream, in TCP
// sequence order: retransmitted bytes are skipped, and lost or uncaptured bytes are
// skipped over (inside a body of known length) or make the stream resynchronise.
func (t *Trojan) parse(ctx *snf.Context, c *conn, p *packet.Packet, dir int, b []byte) {
	pr := t.parsers.GetOrCreate(ctx)
	if pr == nil {
		return
	}
	s := &pr.s[dir]
	seq := binary.BigEndian.Uint32(p.Data[p.L4Off+4:])
	segLen := uint32(segmentLen(p))
	if segLen < uint32(len(b)) {
		segLen = uint32(len(b))
	}
	if !s.synced {
		s.synced, s.next = true, seq
	}
	end := seq + segLen
	if int32(end-s.next) <= 0 {
		return // all retransmitted
	}
	if d := int32(seq - s.next); d < 0 {
		skip := uint32(-d)
		if skip >= uint32(len(b)) {
			b = nil
		} else {
			b = b[skip:]
		}
		seq = s.next
	} else if d > 0 {
		t.skip(ctx, pr, dir, c.kind, uint64(d))
	}
	s.next = end
	missing := uint64(end - seq - uint32(len(b)))
	if c.kind == connHTTP {
		t.feedHTTP(ctx, pr, dir, b)
	} else {
		t.feedFTP(ctx, pr, dir, b)
	}
	if missing > 0 {
		t.skip(ctx, pr, dir, c.kind, missing)
	}
}

// segmentLen returns the TCP payload length the IP header announces (more than the
// captured payload when a snap length cut the frame).
func segmentLen(p *packet.Packet) int {
	l3, d := int(p.L3Off), p.Data
	var ipEnd int
	if p.Flags&packet.IPv4 != 0 {
		ipEnd = l3 + int(binary.BigEndian.Uint16(d[l3+2:]))
	} else {
		ipEnd = l3 + 40 + int(binary.BigEndian.Uint16(d[l3+4:]))
	}
	return max(0, ipEnd-int(p.PayloadOff))
}

// skip passes over n bytes of a stream that were not seen.
func (t *Trojan) skip(ctx *snf.Context, pr *parser, dir int, kind uint8, n uint64) {
	s := &pr.s[dir]
	if kind == connFTP {
		s.broken = true
		return
	}
	switch s.st {
	case stBody, stChunkData:
		if n <= s.left {
			s.msg &^= mfMagic // the body's first bytes may be among the lost ones
			s.left -= n
			if s.left == 0 {
				if s.st == stBody {
					t.msgEnd(pr, dir)
				} else {
					s.st = stChunkEnd
				}
			}
			return
		}
	case stUntilClose, stResync:
		s.msg &^= mfMagic
		return
	}
	t.mGap.Inc()
	s.st, s.msg, s.n = stResync, 0, 0
}

// feedHTTP runs the HTTP parser of one direction over in-order bytes.
func (t *Trojan) feedHTTP(ctx *snf.Context, pr *parser, dir int, b []byte) {
	s := &pr.s[dir]
	if s.st == stResync && len(b) > 0 {
		if dir == 0 && isRequest(b) || dir == 1 && isResponse(b) {
			s.st, s.n, s.msg = stStart, 0, 0
		}
	}
	for len(b) > 0 {
		switch s.st {
		case stBody, stChunkData:
			n := uint64(len(b))
			if n > s.left {
				n = s.left
			}
			t.feedMagic(ctx, s, b[:n])
			s.left -= n
			b = b[n:]
			if s.left == 0 {
				if s.st == stBody {
					t.msgEnd(pr, dir)
				} else {
					s.st = stChunkEnd
				}
			}
		case stUntilClose:
			t.feedMagic(ctx, s, b)
			return
		case stResync:
			return
		default: // line states
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				s.addLine(b, dir == 0 && s.st == stStart)
				return
			}
			s.addLine(b[:i], dir == 0 && s.st == stStart)
			b = b[i+1:]
			t.httpLine(ctx, pr, dir)
			s.n, s.roll, s.names = 0, 0, 0
		}
	}
}

// addLine appends to the current line the bytes that fit, and tracks file extensions in
// it when names is set.
func (s *stream) addLine(b []byte, names bool) {
	if int(s.n) < lineCap {
		s.n += uint8(copy(s.line[s.n:], b))
	}
	if !names {
		return
	}
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '?', '&', '#', ';', '=':
			s.wordEnd()
		default:
			s.roll = s.roll<<8 | uint64(lower(c))
		}
	}
}

// The file extensions that name a download kind, as the low bytes of stream.roll.
const (
	extEXE  = uint64('.')<<24 | uint64('e')<<16 | uint64('x')<<8 | uint64('e')
	extZIP  = uint64('.')<<24 | uint64('z')<<16 | uint64('i')<<8 | uint64('p')
	extHTM  = uint64('.')<<24 | uint64('h')<<16 | uint64('t')<<8 | uint64('m')
	extHTML = extHTM<<8 | uint64('l')
)

func (s *stream) wordEnd() {
	switch {
	case s.roll&0xffffffff == extEXE:
		s.names |= kindEXE
	case s.roll&0xffffffff == extZIP:
		s.names |= kindZIP
	case s.roll&0xffffffff == extHTM, s.roll&0xffffffffff == extHTML:
		s.names |= kindHTML
	}
	s.roll = 0
}

// text returns the kept part of the current line without a trailing CR.
func (s *stream) text() []byte {
	l := s.line[:s.n]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	return l
}

// httpLine handles a complete line of an HTTP stream.
func (t *Trojan) httpLine(ctx *snf.Context, pr *parser, dir int) {
	s := &pr.s[dir]
	l := s.text()
	switch s.st {
	case stStart:
		if len(l) == 0 {
			return
		}
		s.msg, s.ctype, s.left, s.mn = 0, ctNone, 0, 0
		if dir == 0 {
			if !isRequest(l) {
				t.resync(s)
				return
			}
			s.wordEnd()
			h := s.names & kindAll
			if hasPrefixFold(l, "head ") {
				h |= hintHead
			}
			pr.push(h)
			s.st = stHeaders
			return
		}
		status, ok := statusCode(l)
		if !ok {
			t.resync(s)
			return
		}
		s.status = status
		if status >= 200 {
			s.hint = pr.pop()
		}
		s.st = stHeaders
	case stHeaders:
		if len(l) == 0 {
			t.headersEnd(ctx, pr, dir)
			return
		}
		t.header(s, l)
	case stChunkSize:
		size, ok := hexSize(l)
		switch {
		case !ok:
			t.resync(s)
		case size == 0:
			s.st = stTrailer
		default:
			s.left, s.st = size, stChunkData
		}
	case stChunkEnd:
		s.st = stChunkSize
	case stTrailer:
		if len(l) == 0 {
			t.msgEnd(pr, dir)
		}
	}
}

func (t *Trojan) resync(s *stream) {
	t.mGap.Inc()
	s.st, s.msg = stResync, 0
}

// statusCode parses "HTTP/1.x NNN …".
func statusCode(l []byte) (uint16, bool) {
	if len(l) < 12 || !hasPrefixFold(l, "http/") {
		return 0, false
	}
	i := bytes.IndexByte(l, ' ')
	if i < 0 || len(l) < i+4 || !isDigit(l[i+1]) || !isDigit(l[i+2]) || !isDigit(l[i+3]) {
		return 0, false
	}
	return uint16(l[i+1]-'0')*100 + uint16(l[i+2]-'0')*10 + uint16(l[i+3]-'0'), true
}

// hexSize parses a chunk-size line (extensions after ';' ignored).
func hexSize(l []byte) (uint64, bool) {
	var v uint64
	n := 0
	for _, c := range l {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= lower(c) && lower(c) <= 'f':
			d = lower(c) - 'a' + 10
		default:
			return v, n > 0 && (c == ';' || c == ' ' || c == '\t')
		}
		if n++; n > 15 {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, n > 0
}

// header handles a header line of a message.
func (t *Trojan) header(s *stream, l []byte) {
	if len(l) == 0 || lower(l[0]) != 'c' && lower(l[0]) != 't' {
		return // not one of the three headers that matter
	}
	switch {
	case hasPrefixFold(l, "content-length:"):
		v := bytes.TrimLeft(l[len("content-length:"):], " \t")
		var n uint64
		digits := 0
		for _, c := range v {
			if !isDigit(c) || digits == 18 {
				break
			}
			n = n*10 + uint64(c-'0')
			digits++
		}
		if digits > 0 {
			s.msg |= mfLen
			s.left = n
		}
	case hasPrefixFold(l, "transfer-encoding:"):
		if containsFold(l[len("transfer-encoding:"):], "chunked") {
			s.msg |= mfChunked
		}
	case hasPrefixFold(l, "content-type:"):
		s.ctype = contentType(bytes.TrimLeft(l[len("content-type:"):], " \t"))
	}
}

func containsFold(b []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if hasPrefixFold(b[i:], sub) {
			return true
		}
	}
	return false
}

var contentTypes = [...]struct {
	name string
	ct   uint8
}{
	{"text/html", ctHTML},
	{"application/xhtml+xml", ctHTML},
	{"application/zip", ctZIP},
	{"application/x-zip", ctZIP},
	{"application/x-zip-compressed", ctZIP},
	{"application/x-msdownload", ctEXE},
	{"application/x-msdos-program", ctEXE},
	{"application/x-dosexec", ctEXE},
	{"application/x-ms-dos-executable", ctEXE},
	{"application/vnd.microsoft.portable-executable", ctEXE},
	{"application/octet-stream", ctOctet},
	{"binary/octet-stream", ctOctet},
	{"application/force-download", ctOctet},
}

// contentType classifies a Content-Type value (the media type, case-insensitively, before
// any parameters).
func contentType(v []byte) uint8 {
	for _, c := range contentTypes {
		if !hasPrefixFold(v, c.name) {
			continue
		}
		if len(v) == len(c.name) {
			return c.ct
		}
		if n := v[len(c.name)]; n == ';' || n == ' ' || n == '\t' {
			return c.ct
		}
	}
	return ctOther
}

// headersEnd decides how a message's body is delimited and, for a response, what it
// downloads: the Content-Type, or for a generic binary type (or none) the file extension in
// the request target, decides; when neither does, the first bytes of the body may (a ZIP or
// PE header). Only 2xx responses to requests other than HEAD download.
func (t *Trojan) headersEnd(ctx *snf.Context, pr *parser, dir int) {
	s := &pr.s[dir]
	noBody := false
	if dir == 1 {
		if s.status < 200 { // interim (100 Continue): the real response follows
			s.st = stStart
			return
		}
		t.mHTTP.Inc()
		noBody = s.hint&hintHead != 0 || s.status == 204 || s.status == 304
		if s.status < 300 && s.hint&hintHead == 0 {
			var k uint8
			switch s.ctype {
			case ctHTML:
				k = kindHTML
			case ctZIP:
				k = kindZIP
			case ctEXE:
				k = kindEXE
			case ctOctet, ctNone:
				k = s.hint & (kindZIP | kindEXE)
			}
			if k != 0 {
				t.download(ctx, k)
			} else if !noBody {
				s.msg |= mfMagic
			}
		}
	}
	switch {
	case noBody:
		t.msgEnd(pr, dir)
	case s.msg&mfChunked != 0:
		s.st = stChunkSize
	case s.msg&mfLen != 0:
		if s.left == 0 {
			t.msgEnd(pr, dir)
		} else {
			s.st = stBody
		}
	case dir == 1:
		s.st = stUntilClose
	default: // a request without a length has no body
		t.msgEnd(pr, dir)
	}
}

// feedMagic collects a response body's first bytes and reports a ZIP or EXE by them.
func (t *Trojan) feedMagic(ctx *snf.Context, s *stream, b []byte) {
	if s.msg&mfMagic == 0 || len(b) == 0 {
		return
	}
	s.mn += uint8(copy(s.magic[s.mn:], b))
	if s.mn < 4 && (s.mn < 2 || string(s.magic[:2]) == "PK") {
		return // "PK" needs its next two bytes
	}
	s.msg &^= mfMagic
	if k := magic(s.magic[:s.mn]); k != 0 {
		t.download(ctx, k)
	}
}

// msgEnd ends a message: the stream waits for the next one.
func (t *Trojan) msgEnd(pr *parser, dir int) {
	s := &pr.s[dir]
	s.st, s.msg, s.left, s.mn, s.hint, s.status, s.ctype = stStart, 0, 0, 0, 0, 0, ctNone
}

// feedFTP runs the FTP control-connection parser over in-order bytes: a RETR of a file
// named *.html, *.htm, *.zip or *.exe is a download when the server replies 226 or 250.
func (t *Trojan) feedFTP(ctx *snf.Context, pr *parser, dir int, b []byte) {
	s := &pr.s[dir]
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.addLine(b, dir == 0)
			return
		}
		s.addLine(b[:i], dir == 0)
		b = b[i+1:]
		if !s.broken {
			t.ftpLine(ctx, pr, dir)
		}
		s.n, s.roll, s.names, s.broken = 0, 0, 0, false
	}
}

func (t *Trojan) ftpLine(ctx *snf.Context, pr *parser, dir int) {
	s := &pr.s[dir]
	l := s.text()
	if dir == 0 {
		if hasPrefixFold(l, "retr ") {
			t.mFTP.Inc()
			s.wordEnd()
			pr.ftpPending = s.names & kindAll
		}
		return
	}
	if len(l) < 3 || !isDigit(l[0]) || !isDigit(l[1]) || !isDigit(l[2]) || pr.ftpPending == 0 {
		return
	}
	switch code := string(l[:3]); {
	case code == "226" || code == "250":
		t.download(ctx, pr.ftpPending)
		pr.ftpPending = 0
	case code[0] >= '4':
		pr.ftpPending = 0
	}
}
