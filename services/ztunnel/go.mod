module github.com/ambitmesh/ambit/services/ztunnel

go 1.26

replace (
	github.com/ambitmesh/ambit/pkg => ../../pkg
	github.com/ambitmesh/ambit/proto => ../../proto
)
