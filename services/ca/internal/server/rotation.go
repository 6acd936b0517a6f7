package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"google.golang.org/protobuf/types/known/timestamppb"

	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
	"github.com/ambitmesh/ambit/services/ca/internal/rotation"
)

// StartRotation adds a new root (admins only).
func (s *Server) StartRotation(ctx context.Context, req *cav1.StartRotationRequest) (*cav1.StartRotationResponse, error) {
	const method = "StartRotation"
	ctx, span := s.tracer.Start(ctx, "ca.StartRotation")
	defer span.End()
	c, err := s.authenticate(ctx)
	if err == nil {
		err = requireAdmin(c)
	}
	if err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	var material *keystore.Material
	if req.GetCertChainPem() != "" || req.GetKeyPem() != "" {
		material, err = keystore.ParseMaterial([]byte(req.GetCertChainPem()), []byte(req.GetKeyPem()), s.o.TrustDomain, s.o.Now())
		if err != nil {
			return nil, s.fail(ctx, method, c, "", fault.Wrap(fault.InvalidArgument, "bad_authority", err, "operator-provided authority rejected"))
		}
	}
	if _, err := s.o.Rotation.Start(ctx, material, c.String()); err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	st, err := s.rotationStatus(ctx)
	if err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	return &cav1.StartRotationResponse{Status: st}, nil
}

// GetRotationStatus reports the rotation (admins only).
func (s *Server) GetRotationStatus(ctx context.Context, _ *cav1.GetRotationStatusRequest) (*cav1.GetRotationStatusResponse, error) {
	const method = "GetRotationStatus"
	c, err := s.authenticate(ctx)
	if err == nil {
		err = requireAdmin(c)
	}
	if err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	st, err := s.rotationStatus(ctx)
	if err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	return &cav1.GetRotationStatusResponse{Status: st}, nil
}

// AdvanceRotation moves the rotation on (admins only).
func (s *Server) AdvanceRotation(ctx context.Context, req *cav1.AdvanceRotationRequest) (*cav1.AdvanceRotationResponse, error) {
	const method = "AdvanceRotation"
	ctx, span := s.tracer.Start(ctx, "ca.AdvanceRotation")
	defer span.End()
	c, err := s.authenticate(ctx)
	if err == nil {
		err = requireAdmin(c)
	}
	if err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	expected, ok := phaseFromProto(req.GetExpectedPhase())
	if !ok {
		return nil, s.fail(ctx, method, c, "", fault.New(fault.InvalidArgument, "bad_phase", "expected_phase must be ROOT_ADDED or SIGNING_NEW"))
	}
	if _, err := s.o.Rotation.Advance(ctx, expected, req.GetForce(), c.String()); err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	st, err := s.rotationStatus(ctx)
	if err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	return &cav1.AdvanceRotationResponse{Status: st}, nil
}

func phaseFromProto(p cav1.RotationPhase) (rotation.Phase, bool) {
	switch p {
	case cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED:
		return rotation.RootAdded, true
	case cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW:
		return rotation.SigningNew, true
	}
	return "", false
}

func phaseToProto(p rotation.Phase) cav1.RotationPhase {
	switch p {
	case rotation.Idle:
		return cav1.RotationPhase_ROTATION_PHASE_IDLE
	case rotation.RootAdded:
		return cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED
	case rotation.SigningNew:
		return cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW
	}
	return cav1.RotationPhase_ROTATION_PHASE_UNSPECIFIED
}

func (s *Server) rotationStatus(ctx context.Context) (*cav1.RotationStatus, error) {
	st, err := s.o.Rotation.Status(ctx)
	if err != nil {
		return nil, err
	}
	snap := st.Snapshot
	out := &cav1.RotationStatus{
		Phase:           phaseToProto(st.Phase),
		TrustDomain:     s.o.TrustDomain.Name(),
		BundleVersion:   snap.State.BundleVersion,
		RequiredVersion: st.Required,
		ReadyToAdvance:  st.Ready,
		WaitingFor:      st.WaitingFor,
		Distribution: &cav1.Distribution{
			Replicas:        uint32(st.Distribution.Replicas),
			ReplicasCurrent: uint32(st.Distribution.ReplicasCurrent),
			Watchers:        uint32(st.Distribution.Watchers),
			WatchersAcked:   uint32(st.Distribution.WatchersAcked),
		},
	}
	if st.Phase == rotation.SigningNew {
		out.DropTime = timestamppb.New(snap.State.Rotation.DropAt)
	}
	for _, a := range snap.Ordered {
		root := a.Root()
		sum := sha256.Sum256(root.Raw)
		out.Authorities = append(out.Authorities, &cav1.Authority{
			Id:             a.Record.ID,
			RootSubject:    root.Subject.String(),
			SigningSubject: a.Signing().Subject.String(),
			RootSha256:     hex.EncodeToString(sum[:]),
			NotBefore:      timestamppb.New(a.Signing().NotBefore),
			NotAfter:       timestamppb.New(a.Signing().NotAfter),
			Active:         a.Record.ID == snap.State.Active,
			Origin:         a.Record.Origin,
		})
	}
	return out, nil
}
