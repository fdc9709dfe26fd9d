package docs_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The guide's code must not rot. Every ```go and ```yaml block in a guide names, on its
// first line, the file it is taken from, as a comment with a path from the repository root:
//
//	```go
//	// examples/tokenbucket/tokenbucket.go
//	func New(env *snf.Env, cfg *Config) (snf.NF, error) {
//	...
//
// and the rest of the block must appear in that file verbatim, as whole consecutive lines
// (tabs included). So a change to the code that is not made in the guide, or the reverse,
// fails this test. Shell commands and program output (```sh, ```text) are not checked.

// source matches a block's first line: "// path.go" or "# path.yaml".
var source = regexp.MustCompile(`^(?://|#) ([\w./-]+\.(?:go|yaml))$`)

type block struct {
	line int    // line of the opening fence in the guide
	lang string // go or yaml
	src  string // the file named on the block's first line ("" if none)
	body string // the lines after it, each ending in \n
}

func blocks(t *testing.T, guide string) []block {
	f, err := os.Open(guide)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out []block
		cur *block
		n   int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		l := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur = &block{line: n}
			switch strings.TrimSpace(strings.TrimPrefix(l, "```")) {
			case "go", "golang":
				cur.lang = "go"
			case "yaml", "yml":
				cur.lang = "yaml"
			} // other blocks (sh, text) are not checked, but their contents are skipped
		case cur != nil && l == "```":
			if cur.lang != "" {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil && cur.lang != "" && cur.src == "" && cur.body == "":
			if m := source.FindStringSubmatch(l); m != nil {
				cur.src = m[1]
			} else {
				cur.body = l + "\n" // unmarked: reported below
			}
		case cur != nil:
			cur.body += l + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: code block never closed", guide, cur.line)
	}
	return out
}

func TestWritingAnNF(t *testing.T) {
	const guide = "writing-an-nf.md"
	cited := map[string]int{}
	for _, b := range blocks(t, guide) {
		if b.src == "" {
			t.Errorf("%s:%d: a ```%s block must start with a comment naming its source file (\"// examples/…/x.go\")", guide, b.line, b.lang)
			continue
		}
		if strings.TrimSpace(b.body) == "" {
			t.Errorf("%s:%d: block from %s has no code", guide, b.line, b.src)
			continue
		}
		data, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(b.src)))
		if err != nil {
			t.Errorf("%s:%d: %v", guide, b.line, err)
			continue
		}
		if !strings.Contains("\n"+string(data), "\n"+b.body) {
			t.Errorf("%s:%d: this block is not in %s as written; change the guide and the file together:\n%s", guide, b.line, b.src, b.body)
			continue
		}
		cited[b.src]++
	}
	// The guide walks through these files; a block turned into unchecked text would drop one.
	for _, f := range []string{
		"examples/tokenbucket/tokenbucket.go",
		"examples/tokenbucket/tokenbucket_test.go",
		"examples/tokenbucket/chain.yaml",
		"examples/tokenbucket/cmd/tbrun/main.go",
	} {
		if cited[f] == 0 {
			t.Errorf("%s: no checked block from %s", guide, f)
		}
	}
	t.Logf("checked blocks per file: %v", cited)
}
