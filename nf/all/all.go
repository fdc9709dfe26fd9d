// Package all registers every NF of the snf library (import it for its side effect).
package all

import (
	_ "github.com/snf-dev/snf/nf/firewall"
	_ "github.com/snf-dev/snf/nf/ids"
	_ "github.com/snf-dev/snf/nf/lb"
	_ "github.com/snf-dev/snf/nf/monitor"
	_ "github.com/snf-dev/snf/nf/nat"
	_ "github.com/snf-dev/snf/nf/portscan"
	_ "github.com/snf-dev/snf/nf/ratelimit"
	_ "github.com/snf-dev/snf/nf/trojan"
)
