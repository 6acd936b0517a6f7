module github.com/ambitmesh/ambit/services/ztunnel

go 1.26

require (
	github.com/ambitmesh/ambit/pkg v0.0.0-00010101000000-000000000000
	github.com/ambitmesh/ambit/proto v0.0.0-00010101000000-000000000000
)

replace (
	github.com/ambitmesh/ambit/pkg => ../../pkg
	github.com/ambitmesh/ambit/proto => ../../proto
)
