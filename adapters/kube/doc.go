// Package kube is the partition controller's Kubernetes side (client-go).
//
// The mqreader StatefulSet's pods each own a contiguous range of the 256
// queue partitions. They find their range by pod name in a ConfigMap
// (<statefulset>-partitions, key domain.AssignmentKey) mounted into every
// pod. When the StatefulSet's replica count changes (kubectl scale or an
// HPA), Controller recomputes the ranges with domain.Assign, writes the
// ConfigMap, and then sets the pod-template annotation ChecksumAnnotation to
// the SHA-256 of the new assignment. Changing the pod template makes the
// StatefulSet controller roll the readers one by one, highest ordinal first;
// each reader drains its leases on SIGTERM and starts again with its new
// range.
//
// The controller follows kubernetes/sample-controller: informers on the
// StatefulSet and on the ConfigMap only enqueue the StatefulSet's key in a
// rate-limited workqueue; one worker runs an idempotent sync that reads both
// objects live and writes only what differs from the desired state, so
// repeated events, resyncs and restarts change nothing. RunElected runs the
// controller only while this process holds a coordination.k8s.io Lease, so
// with several replicas exactly one writes.
package kube
