package clustertrustbundle

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
)

// fakeConfig is the config API's Get and Apply for one object, with the
// store's resourceVersion precondition. beforeApply, when set, runs before
// each Apply is judged: a concurrent writer.
type fakeConfig struct {
	configv1.ConfigServiceClient
	mu          sync.Mutex
	obj         *object
	rev         int
	applies     int
	unavailable bool
	beforeApply func(f *fakeConfig)
}

func (f *fakeConfig) Get(_ context.Context, req *configv1.GetRequest, _ ...grpc.CallOption) (*configv1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unavailable {
		return nil, status.Error(codes.Unavailable, "no config replica")
	}
	if f.obj == nil {
		return nil, status.Error(codes.NotFound, "not found")
	}
	raw, _ := json.Marshal(f.obj)
	return &configv1.GetResponse{Object: raw}, nil
}

func (f *fakeConfig) Apply(_ context.Context, req *configv1.ApplyRequest, _ ...grpc.CallOption) (*configv1.ApplyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if hook := f.beforeApply; hook != nil {
		f.beforeApply = nil
		hook(f)
	}
	var o object
	if err := json.Unmarshal(req.GetManifest(), &o); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if rv := o.Metadata.ResourceVersion; rv != "" && (f.obj == nil || rv != f.obj.Metadata.ResourceVersion) {
		return nil, status.Error(codes.Aborted, "resourceVersion changed")
	}
	f.put(o)
	f.applies++
	return &configv1.ApplyResponse{Object: req.GetManifest()}, nil
}

// put stores o as a new revision.
func (f *fakeConfig) put(o object) {
	f.rev++
	o.Metadata.ResourceVersion = strconv.Itoa(f.rev)
	f.obj = &o
}

func (f *fakeConfig) storedVersion() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.obj == nil {
		return 0
	}
	return f.obj.version()
}

func TestSync(t *testing.T) {
	a, b := spiffetest.NewCA(t, testTD).Root(), spiffetest.NewCA(t, testTD).Root()
	tests := []struct {
		name        string
		setup       func(f *fakeConfig)
		version     uint64
		wantVersion uint64
		wantApplies int
		wantErr     codes.Code
	}{
		{"creates the object", func(*fakeConfig) {}, 2, 2, 1, codes.OK},
		{"replaces an older bundle", func(f *fakeConfig) { f.put(desired(testBundle(1, a))) }, 2, 2, 1, codes.OK},
		{"leaves an equal bundle alone", func(f *fakeConfig) { f.put(desired(testBundle(2, a, b))) }, 2, 2, 0, codes.OK},
		{"never replaces a newer bundle", func(f *fakeConfig) { f.put(desired(testBundle(3, b))) }, 2, 3, 0, codes.OK},
		{"re-reads after a conflict, then stands back for the newer bundle", func(f *fakeConfig) {
			f.put(desired(testBundle(1, a)))
			f.beforeApply = func(f *fakeConfig) { f.put(desired(testBundle(3, b))) }
		}, 2, 3, 0, codes.OK},
		{"re-reads after a conflict and writes over an older one", func(f *fakeConfig) {
			f.put(desired(testBundle(1, a)))
			f.beforeApply = func(f *fakeConfig) { f.put(desired(testBundle(1, b))) }
		}, 2, 2, 1, codes.OK},
		{"reports an unreachable config service", func(f *fakeConfig) { f.unavailable = true }, 2, 0, 0, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeConfig{}
			tt.setup(f)
			p, err := New(Options{Addresses: []string{"127.0.0.1:1"}, TrustDomain: testTD})
			if err != nil {
				t.Fatal(err)
			}
			err = p.sync(context.Background(), f, testBundle(tt.version, a, b))
			if got := status.Code(err); got != tt.wantErr {
				t.Fatalf("sync: %v, want %s", err, tt.wantErr)
			}
			if got := f.storedVersion(); got != tt.wantVersion {
				t.Errorf("stored version %d, want %d", got, tt.wantVersion)
			}
			if f.applies != tt.wantApplies {
				t.Errorf("%d applies, want %d", f.applies, tt.wantApplies)
			}
		})
	}
}

func TestPublishKeepsTheNewest(t *testing.T) {
	p, err := New(Options{Addresses: []string{"127.0.0.1:1"}, TrustDomain: testTD})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, v := range []uint64{3, 2, 4, 1} {
		if err := p.Publish(ctx, testBundle(v)); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.current().Version; got != 4 {
		t.Fatalf("current version %d, want 4", got)
	}
}
