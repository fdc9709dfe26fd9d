package snf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ChainSpec is a parsed, validated chain: NF types with decoded configs. Build instances
// of it with NewChain (one per unit).
//
// The chain file format (YAML):
//
//	# chain.yaml
//	max_flows: 1000000        # optional bound on each unit's flow table
//	nfs:
//	  - nf: nat               # the registered NF type
//	    name: edge-nat        # optional instance name (default: the type); unique
//	    config:               # optional; fields not given keep their defaults
//	      public: 198.51.100.1
//	  - nf: firewall
type ChainSpec struct {
	// Source names where the spec came from (a file name, or "--nfs") for messages.
	Source   string
	MaxFlows int
	NFs      []NFSpec
}

// NFSpec is one NF of a chain.
type NFSpec struct {
	Type, Name string
	factory    *Factory
	config     any
	index      int
}

// Config returns the decoded config (a pointer to the NF's config type).
func (s *NFSpec) Config() any { return s.config }

func (s *NFSpec) where(c *ChainSpec) string {
	return fmt.Sprintf("%s: nfs[%d] (%s)", c.Source, s.index, s.Name)
}

type fileSpec struct {
	MaxFlows int          `yaml:"max_flows"`
	NFs      []fileNFSpec `yaml:"nfs"`
}

type fileNFSpec struct {
	NF     string    `yaml:"nf"`
	Name   string    `yaml:"name"`
	Config yaml.Node `yaml:"config"`
}

var notFound = regexp.MustCompile(`field (\S+) not found in type snf\.\w+`)

// yamlError makes a yaml.v3 error one line that names the unknown field and the known ones.
func yamlError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = notFound.ReplaceAllString(msg, `unknown field "$1" (the fields are max_flows and nfs; an NF has nf, name and config)`)
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

// LoadChainFile reads and validates a chain file.
func LoadChainFile(path string) (*ChainSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	return ParseChain(b, path)
}

// ParseChain parses and validates a chain file's contents; source names it in errors.
func ParseChain(data []byte, source string) (*ChainSpec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fs fileSpec
	if err := dec.Decode(&fs); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty chain file (want a list under \"nfs:\")", source)
		}
		return nil, fmt.Errorf("%s: %s", source, yamlError(err))
	}
	if len(fs.NFs) == 0 {
		return nil, fmt.Errorf("%s: no NFs (want a list under \"nfs:\"; an empty chain is --nfs none)", source)
	}
	if fs.MaxFlows < 0 {
		return nil, fmt.Errorf("%s: max_flows: must be >= 0", source)
	}
	spec := &ChainSpec{Source: source, MaxFlows: fs.MaxFlows}
	for i, n := range fs.NFs {
		var raw []byte
		if n.Config.Kind != 0 {
			if n.Config.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("%s: nfs[%d] (%s): line %d: config must be a mapping of fields", source, i, n.NF, n.Config.Line)
			}
			var m map[string]any
			if err := n.Config.Decode(&m); err != nil {
				return nil, fmt.Errorf("%s: nfs[%d] (%s): config: %v", source, i, n.NF, err)
			}
			var err error
			if raw, err = json.Marshal(m); err != nil {
				return nil, fmt.Errorf("%s: nfs[%d] (%s): config: %v", source, i, n.NF, err)
			}
		}
		if err := spec.add(n.NF, n.Name, raw); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// ChainFromNames builds a spec of NFs with default configs from a comma-separated list
// ("nat,firewall"); "" or "none" is the empty chain.
func ChainFromNames(list string) (*ChainSpec, error) {
	spec := &ChainSpec{Source: "--nfs"}
	if list == "" || list == "none" {
		return spec, nil
	}
	for _, name := range strings.Split(list, ",") {
		if err := spec.add(strings.TrimSpace(name), "", nil); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

func (c *ChainSpec) add(typ, name string, raw []byte) error {
	i := len(c.NFs)
	if typ == "" {
		return fmt.Errorf("%s: nfs[%d]: missing \"nf:\" (the NF type, one of %s)", c.Source, i, strings.Join(Names(), ", "))
	}
	f, err := Lookup(typ)
	if err != nil {
		return fmt.Errorf("%s: nfs[%d]: %w", c.Source, i, err)
	}
	if name == "" {
		name = typ
		for n := 2; c.hasName(name); n++ {
			name = fmt.Sprintf("%s%d", typ, n)
		}
	} else if c.hasName(name) {
		return fmt.Errorf("%s: nfs[%d] (%s): duplicate instance name %q", c.Source, i, typ, name)
	}
	cfg, err := f.DecodeConfig(raw)
	if err != nil {
		return fmt.Errorf("%s: nfs[%d] (%s): config: %w", c.Source, i, name, err)
	}
	c.NFs = append(c.NFs, NFSpec{Type: typ, Name: name, factory: f, config: cfg, index: i})
	return nil
}

func (c *ChainSpec) hasName(n string) bool {
	for _, s := range c.NFs {
		if s.Name == n {
			return true
		}
	}
	return false
}
