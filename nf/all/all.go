// Package all registers every NF of the snf library (import it for its side effect).
package all

import (
	_ "github.com/snf-dev/snf/nf/firewall"
	_ "github.com/snf-dev/snf/nf/nat"
)
