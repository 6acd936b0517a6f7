package resource

import (
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// totalAnnotationBytes is Kubernetes' limit on the summed size of an
// object's annotation keys and values.
const totalAnnotationBytes = 256 << 10

// validateObjectMeta applies Kubernetes' metadata rules: a name in the
// kind's format, a namespace exactly when the kind is namespaced, and
// well-formed labels and annotations.
func validateObjectMeta(obj *Object, k *Kind) ErrorList {
	var errs ErrorList
	meta := &obj.Metadata
	p := field.NewPath("metadata")

	if meta.Name == "" {
		detail := ""
		if meta.GenerateName != "" {
			detail = "generateName is not supported; set name"
		}
		errs = append(errs, errRequired(p.Child("name"), detail))
	} else {
		errs = append(errs, validateObjectName(p.Child("name"), meta.Name, k.nameRule)...)
	}

	switch {
	case k.namespaced && meta.Namespace == "":
		errs = append(errs, errRequired(p.Child("namespace"), k.name+" is namespaced"))
	case k.namespaced:
		errs = append(errs, validateDNS1123Label(p.Child("namespace"), meta.Namespace, "invalid namespace")...)
	case meta.Namespace != "":
		errs = append(errs, errForbidden(p.Child("namespace"), meta.Namespace, k.name+" is cluster-scoped"))
	}

	errs = append(errs, validateLabels(p.Child("labels"), meta.Labels)...)
	errs = append(errs, validateAnnotations(p.Child("annotations"), meta.Annotations)...)
	return errs
}

func validateObjectName(p *field.Path, name string, rule nameRule) ErrorList {
	switch rule {
	case nameDNS1123Label:
		return validateDNS1123Label(p, name, "invalid name")
	case nameDNS1035Label:
		if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
			return ErrorList{errInvalid(p, name, "invalid name", strings.Join(msgs, "; "))}
		}
		return nil
	case nameBySpec:
		return nil
	default:
		return validateDNS1123Subdomain(p, name, "invalid name")
	}
}

// validateLabels checks label keys (qualified names) and values, visiting
// keys in sorted order so the error order is stable.
func validateLabels(p *field.Path, labels map[string]string) ErrorList {
	var errs ErrorList
	for _, k := range sortedKeys(labels) {
		if msgs := content.IsLabelKey(k); len(msgs) > 0 {
			errs = append(errs, errInvalid(p, k, "invalid label key", strings.Join(msgs, "; ")))
		}
		if msgs := content.IsLabelValue(labels[k]); len(msgs) > 0 {
			errs = append(errs, errInvalid(p.Key(k), labels[k], "invalid label value", strings.Join(msgs, "; ")))
		}
	}
	errs = append(errs, validateAmbientLabels(p, labels)...)
	return errs
}

// validateAmbientLabels checks the values of the labels that enroll
// workloads in the ambient mesh: a typo there would silently leave workloads
// out of the mesh, so it is better refused.
func validateAmbientLabels(p *field.Path, labels map[string]string) ErrorList {
	const dataplaneMode = "istio.io/dataplane-mode"
	if v, ok := labels[dataplaneMode]; ok && v != "ambient" && v != "none" {
		return ErrorList{errNotSupported(p.Key(dataplaneMode), v, []string{"ambient", "none"})}
	}
	return nil
}

func validateAnnotations(p *field.Path, annotations map[string]string) ErrorList {
	var errs ErrorList
	total := 0
	for _, k := range sortedKeys(annotations) {
		if msgs := content.IsLabelKey(strings.ToLower(k)); len(msgs) > 0 {
			errs = append(errs, errInvalid(p, k, "invalid annotation key", strings.Join(msgs, "; ")))
		}
		total += len(k) + len(annotations[k])
	}
	if total > totalAnnotationBytes {
		errs = append(errs, &FieldError{
			Type: ErrorTypeTooLong, Field: p.String(), Value: strconv.Itoa(total) + " bytes",
			Summary: "annotations too large", Detail: "keys and values must total at most 262144 bytes",
		})
	}
	return errs
}

func validateDNS1123Label(p *field.Path, v, summary string) ErrorList {
	if msgs := content.IsDNS1123Label(v); len(msgs) > 0 {
		return ErrorList{errInvalid(p, v, summary, strings.Join(msgs, "; "))}
	}
	return nil
}

func validateDNS1123Subdomain(p *field.Path, v, summary string) ErrorList {
	if msgs := content.IsDNS1123Subdomain(v); len(msgs) > 0 {
		return ErrorList{errInvalid(p, v, summary, strings.Join(msgs, "; "))}
	}
	return nil
}
