// Package envoyvalidate checks Envoy configuration with Envoy's own protos
// (go-control-plane): strict decoding (unknown fields are errors) and the
// protoc-gen-validate rules of every message, including the messages packed in
// google.protobuf.Any fields (typed_config of filters, transport sockets, cluster
// extensions, a Wasm plugin's configuration), which ValidateAll does not descend into.
//
// The typed configs meshplug renders are registered by the imports below; an Any of a
// type that is not registered is an error, so a typo in a type URL cannot pass.
package envoyvalidate

import (
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Typed configs meshplug renders.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "google.golang.org/protobuf/types/known/wrapperspb"
)

// BootstrapYAML decodes an envoy.yaml strictly into a Bootstrap and validates it
// deeply.
func BootstrapYAML(b []byte) (*bootstrapv3.Bootstrap, error) {
	var bs bootstrapv3.Bootstrap
	if err := UnmarshalYAML(b, &bs); err != nil {
		return nil, err
	}
	return &bs, Message(&bs)
}

// UnmarshalYAML decodes YAML (or JSON) into m with protojson: unknown fields, unknown
// enum names and unresolvable Any types are errors.
func UnmarshalYAML(b []byte, m proto.Message) error {
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(j, m)
}

type validator interface{ ValidateAll() error }

// Message validates m and, recursively, every message packed in an Any inside it.
func Message(m proto.Message) error {
	var errs []error
	walk(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().FullName()), true, &errs)
	return errors.Join(errs...)
}

// walk validates m when it is a root (the top message or one unpacked from an Any:
// ValidateAll covers the messages nested in it, except inside Anys) and descends to
// find the Anys.
func walk(m protoreflect.Message, path string, root bool, errs *[]error) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %s: %w", path, a.GetTypeUrl(), err))
			return
		}
		walk(inner.ProtoReflect(), path+"("+string(inner.ProtoReflect().Descriptor().FullName())+")", true, errs)
		return
	}
	if v, ok := m.Interface().(validator); ok && root {
		if err := v.ValidateAll(); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), false, errs)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fmt.Sprintf("%s[%v]", p, k.Interface()), false, errs)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walk(v.Message(), p, false, errs)
		}
		return true
	})
}
