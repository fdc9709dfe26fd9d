package snf

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// Factory builds instances of one registered NF type.
type Factory struct {
	// Name is the NF type's registered name ("nat").
	Name string
	// Summary is one line for listings.
	Summary string

	configType reflect.Type
	defaults   func() any
	build      func(env *Env, cfg any) (NF, error)
}

var (
	registryMu sync.RWMutex
	registry   = map[string]*Factory{}
)

// Register makes an NF type available by name. defaults returns a new config holding the
// defaults (it must make `--nfs NAME` sensible on any capture); build constructs an instance
// from a decoded, validated config without side effects outside env. Register panics on a
// duplicate name: registration happens in init functions, where that is a programming error.
func Register[C any](name, summary string, defaults func() *C, build func(env *Env, cfg *C) (NF, error)) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("snf: NF registered twice: " + name)
	}
	registry[name] = &Factory{
		Name:       name,
		Summary:    summary,
		configType: reflect.TypeFor[C](),
		defaults:   func() any { return defaults() },
		build:      func(env *Env, cfg any) (NF, error) { return build(env, cfg.(*C)) },
	}
}

// Lookup returns the factory of a registered NF type.
func Lookup(name string) (*Factory, error) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown NF %q (known: %s)", name, strings.Join(namesLocked(), ", "))
	}
	return f, nil
}

// Names lists the registered NF types, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return namesLocked()
}

func namesLocked() []string {
	n := make([]string, 0, len(registry))
	for k := range registry {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// Validator is implemented by configs that check themselves after decoding.
type Validator interface {
	Validate() error
}

// DecodeConfig returns the NF's config: its defaults, overlaid with raw (JSON; nil or empty
// keeps the defaults) decoded strictly — an unknown field is an error — and validated.
func (f *Factory) DecodeConfig(raw []byte) (any, error) {
	cfg := f.defaults()
	if len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		resetGiven(cfg, raw)
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(cfg); err != nil {
			return nil, f.fieldError(raw, err)
		}
	}
	if v, ok := cfg.(Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("invalid config: %w", err)
		}
	}
	return cfg, nil
}

// resetGiven zeroes the top-level fields of cfg that raw sets, so that a given list replaces
// the default list instead of being decoded over its elements.
func resetGiven(cfg any, raw []byte) {
	var given map[string]json.RawMessage
	if json.Unmarshal(raw, &given) != nil {
		return // the strict decode reports it
	}
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return
	}
	v = v.Elem()
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" {
			name = sf.Name
		}
		for k := range given {
			if strings.EqualFold(k, name) && sf.IsExported() {
				v.Field(i).SetZero()
			}
		}
	}
}

// fieldError names the top-level field behind a decode error when encoding/json did not
// (errors from a value's own UnmarshalText or UnmarshalJSON, such as a bad prefix).
func (f *Factory) fieldError(raw []byte, err error) error {
	err = configError(err)
	if strings.Contains(err.Error(), "field") {
		return err
	}
	var given map[string]json.RawMessage
	if json.Unmarshal(raw, &given) != nil {
		return err
	}
	keys := make([]string, 0, len(given))
	for k := range given {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		one, _ := json.Marshal(map[string]json.RawMessage{k: given[k]})
		dec := json.NewDecoder(bytes.NewReader(one))
		dec.DisallowUnknownFields()
		if e := dec.Decode(f.defaults()); e != nil {
			return fmt.Errorf("field %q: %w", k, configError(e))
		}
	}
	return err
}

// configError turns encoding/json errors into messages that name the field.
func configError(err error) error {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok && te.Field != "" {
		return fmt.Errorf("field %q: cannot use a JSON %s as %s", te.Field, te.Value, te.Type)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return fmt.Errorf("%s", msg)
}

func asType[T error](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}

// Field describes one config field for listings.
type Field struct {
	Name    string // the key in the chain file
	Type    string
	Default string // JSON of the default value
	Doc     string
}

// Fields lists the NF's config fields with their defaults and docs (`doc` tags); the fields
// of objects inside lists follow their list as "list[].field".
func (f *Factory) Fields() []Field {
	return structFields(reflect.ValueOf(f.defaults()).Elem(), "")
}

func structFields(v reflect.Value, prefix string) []Field {
	t := v.Type()
	var out []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		def := ""
		if v.IsValid() {
			js, _ := json.Marshal(v.Field(i).Interface())
			def = string(js)
		}
		out = append(out, Field{Name: prefix + name, Type: typeName(sf.Type), Default: def, Doc: sf.Tag.Get("doc")})
		if et := sf.Type; et.Kind() == reflect.Slice && et.Elem().Kind() == reflect.Struct && !custom(et) && !custom(et.Elem()) {
			out = append(out, structFields(reflect.New(et.Elem()).Elem(), prefix+name+"[].")...)
		}
	}
	return out
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// custom reports whether t decodes itself (from a string in the chain file).
func custom(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(jsonUnmarshaler) || p.Implements(textUnmarshaler)
}

func typeName(t reflect.Type) string {
	if custom(t) && t.String() != "snf.Duration" && !strings.HasPrefix(t.String(), "netip.") {
		return "string"
	}
	switch t.String() {
	case "snf.Duration":
		return "duration"
	case "netip.Addr":
		return "address"
	case "netip.Prefix":
		return "prefix"
	}
	switch t.Kind() {
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Struct:
		return "object"
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return t.Kind().String()
}
