module github.com/ambitmesh/ambit/services/config

go 1.26.0

require (
	github.com/ambitmesh/ambit/pkg v0.0.0-00010101000000-000000000000
	github.com/ambitmesh/ambit/proto v0.0.0-00010101000000-000000000000
)

require (
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	istio.io/api v1.31.1 // indirect
	k8s.io/api v0.37.2 // indirect
	k8s.io/apimachinery v0.37.2 // indirect
	sigs.k8s.io/gateway-api v1.6.3 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)

replace (
	github.com/ambitmesh/ambit/pkg => ../../pkg
	github.com/ambitmesh/ambit/proto => ../../proto
)
