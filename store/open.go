package store

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Open opens the store named by u:
//
//	"" or "embedded"                 the in-process store (NewEmbedded)
//	redis://HOST[:PORT][/DB][?OPTS]  a Redis 7 server or cluster (OpenRedis); PORT defaults
//	                                 to 6379, DB to 0
//
// OPTS are RedisOptions fields: timeout=2s (connect and per operation), ttl=10s (table cache
// entry age bound), batch=256 (counter adds per flush), flush=20ms (periodic counter flush),
// dedup=60s (how long a counter add's or pool put's tag is remembered). An unreachable
// server is an error after at most the connect timeout.
func Open(u string) (Store, error) {
	if u == "" || u == "embedded" {
		return NewEmbedded(), nil
	}
	o, err := ParseRedisURL(u)
	if err != nil {
		return nil, err
	}
	return OpenRedis(o)
}

// ParseRedisURL parses redis://HOST[:PORT][/DB][?OPTS] (see Open) into options.
func ParseRedisURL(u string) (RedisOptions, error) {
	var o RedisOptions
	bad := func(format string, a ...any) (RedisOptions, error) {
		return o, fmt.Errorf("store: bad store URL %q: %s", u, fmt.Sprintf(format, a...))
	}
	p, err := url.Parse(u)
	if err != nil {
		return bad("%v", unwrapURLError(err))
	}
	if p.Scheme != "redis" {
		if p.Scheme == "" {
			return bad(`want "embedded" or redis://HOST:PORT[/DB]`)
		}
		return bad("unknown scheme %q: want \"embedded\" or redis://HOST:PORT[/DB]", p.Scheme)
	}
	if p.User != nil {
		return bad("credentials are not supported")
	}
	host, port := p.Hostname(), p.Port()
	if host == "" {
		return bad("no host")
	}
	if port == "" {
		if strings.HasSuffix(p.Host, ":") {
			return bad("empty port")
		}
		port = "6379"
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("port %q out of range", port)
	}
	o.Addr = net.JoinHostPort(host, port)
	if db := strings.TrimPrefix(p.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return bad("database %q is not a number", db)
		}
		o.DB = n
	}
	for k, vs := range p.Query() {
		v := vs[len(vs)-1]
		dur := func(d *time.Duration) error {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				return fmt.Errorf("%s=%q: want a positive duration such as 2s", k, v)
			}
			*d = x
			return nil
		}
		var err error
		switch k {
		case "timeout":
			err = dur(&o.Timeout)
		case "ttl":
			err = dur(&o.CacheTTL)
		case "flush":
			err = dur(&o.FlushEvery)
		case "dedup":
			err = dur(&o.DedupWindow)
		case "retry":
			err = dur(&o.Retry)
		case "naive":
			o.Naive = v == "1" || v == "true"
		case "batch":
			n, e := strconv.Atoi(v)
			if e != nil || n < 1 {
				err = fmt.Errorf("batch=%q: want a positive number", v)
			}
			o.Batch = n
		default:
			err = fmt.Errorf("unknown option %q (timeout, ttl, batch, flush, dedup, retry, naive)", k)
		}
		if err != nil {
			return bad("%v", err)
		}
	}
	return o, nil
}

func unwrapURLError(err error) error {
	if e, ok := err.(*url.Error); ok {
		return e.Err
	}
	return err
}
