package index

import "github.com/ambitmesh/ambit/services/xds/internal/translate/model"

// labelKey is one label pair within a namespace.
type labelKey struct {
	ns, key, value model.Atom
}

// set is an unordered set; callers sort what they output.
type set[T comparable] map[T]struct{}

func (s set[T]) add(t T) { s[t] = struct{}{} }

// workloadLabels indexes workloads by each of their label pairs.
type workloadLabels map[labelKey]set[*model.Workload]

func (wl workloadLabels) add(w *model.Workload) {
	for _, l := range w.Labels {
		k := labelKey{w.Namespace, l.Key, l.Value}
		s := wl[k]
		if s == nil {
			s = set[*model.Workload]{}
			wl[k] = s
		}
		s.add(w)
	}
}

func (wl workloadLabels) remove(w *model.Workload) {
	for _, l := range w.Labels {
		k := labelKey{w.Namespace, l.Key, l.Value}
		if s := wl[k]; s != nil {
			delete(s, w)
			if len(s) == 0 {
				delete(wl, k)
			}
		}
	}
}

// matching calls fn for each workload in ns that sel selects, scanning
// only the workloads carrying sel's rarest pair. An empty selector
// selects nothing.
func (wl workloadLabels) matching(ns model.Atom, sel model.Labels, fn func(*model.Workload)) {
	if len(sel) == 0 {
		return
	}
	var best set[*model.Workload]
	for _, l := range sel {
		s := wl[labelKey{ns, l.Key, l.Value}]
		if len(s) == 0 {
			return
		}
		if best == nil || len(s) < len(best) {
			best = s
		}
	}
	for w := range best {
		if sel.Matches(w.Labels) {
			fn(w)
		}
	}
}

// selectors indexes selecting objects under their first selector pair, so
// the candidates for a label set are found from its pairs.
type selectors[T comparable] map[labelKey]set[T]

func (s selectors[T]) add(ns model.Atom, sel model.Labels, t T) {
	if len(sel) == 0 {
		return
	}
	k := labelKey{ns, sel[0].Key, sel[0].Value}
	m := s[k]
	if m == nil {
		m = set[T]{}
		s[k] = m
	}
	m.add(t)
}

func (s selectors[T]) remove(ns model.Atom, sel model.Labels, t T) {
	if len(sel) == 0 {
		return
	}
	k := labelKey{ns, sel[0].Key, sel[0].Value}
	if m := s[k]; m != nil {
		delete(m, t)
		if len(m) == 0 {
			delete(s, k)
		}
	}
}

// candidates calls fn for every object in ns whose selector's first pair
// is in labels; fn must still check the whole selector. Each object is
// visited at most once (its first pair's key appears once in labels).
func (s selectors[T]) candidates(ns model.Atom, labels model.Labels, fn func(T)) {
	for _, l := range labels {
		for t := range s[labelKey{ns, l.Key, l.Value}] {
			fn(t)
		}
	}
}
