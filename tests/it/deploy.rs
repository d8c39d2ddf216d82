//! Kubernetes manifests (issue 13 point 5): see below.
