package pcapfile

import (
	"errors"
	"io/fs"
	"strconv"
)

// Error is the error a Reader or Writer returns for a bad or unusable file. Its message is
// one line: "pcapfile: FILE: offset N: what is wrong", or "pcapfile: FILE: what is wrong"
// when the problem has no position in the file (it cannot be opened, it is a directory, …).
type Error struct {
	// File is the path given to Open or Create, or the name given to NewReader or NewWriter.
	File string
	// Offset is the byte offset in the file where the bad header, record or block starts,
	// or -1 when the error has no position.
	Offset int64
	// Msg says what is wrong.
	Msg string
	// Err is the underlying error, if any: io.ErrUnexpectedEOF for a truncated file, the
	// *fs.PathError of a file that cannot be opened, an error from pcapgo, …
	Err error
}

func (e *Error) Error() string {
	s := "pcapfile: " + e.File + ": "
	if e.Offset >= 0 {
		s += "offset " + strconv.FormatInt(e.Offset, 10) + ": "
	}
	return s + e.Msg
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// pathError turns an error from os.Open or os.Create into an Error without position whose
// message does not repeat the path.
func pathError(name, verb string, err error) error {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	return &Error{File: name, Offset: -1, Msg: verb + ": " + msg, Err: err}
}
