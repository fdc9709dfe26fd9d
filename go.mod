module github.com/snf-dev/snf

go 1.26.8

require (
	github.com/coregx/ahocorasick v0.3.1
	github.com/gopacket/gopacket v1.7.7
	github.com/redis/rueidis v1.0.79
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	golang.org/x/net v0.57.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)
