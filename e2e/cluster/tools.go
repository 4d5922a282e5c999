//go:build tools

// Package tools pins modules whose files (not packages) the cluster scripts use:
// the Gateway API CRD manifests under config/crd/standard.
package tools

import _ "sigs.k8s.io/gateway-api/apis/v1"
