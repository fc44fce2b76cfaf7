package kube

import (
	rbacv1 "k8s.io/api/rbac/v1"
)

// Rules are the namespaced RBAC rules the controller needs, and no more: the
// Helm chart's Role must grant exactly these (a test compares them), and the
// fake-clientset tests check every request the controller makes against
// them. Reads and writes are limited by resourceNames; list and watch by
// name work because the informers send a metadata.name field selector.
// Creating cannot be limited by name in RBAC: create on configmaps is needed
// only when the ConfigMap is missing, and on leases for the first campaign.
func Rules(cfg Config, ec ElectionConfig) []rbacv1.PolicyRule {
	cfg, _ = cfg.withDefaults()
	ec = ec.withDefaults()
	return []rbacv1.PolicyRule{
		{
			APIGroups:     []string{"apps"},
			Resources:     []string{"statefulsets"},
			ResourceNames: []string{cfg.StatefulSet},
			Verbs:         []string{"get", "list", "watch", "patch"},
		},
		{
			APIGroups:     []string{""},
			Resources:     []string{"configmaps"},
			ResourceNames: []string{cfg.ConfigMap},
			Verbs:         []string{"get", "list", "watch", "update"},
		},
		{
			APIGroups: []string{""},
			Resources: []string{"configmaps"},
			Verbs:     []string{"create"},
		},
		{
			APIGroups:     []string{"coordination.k8s.io"},
			Resources:     []string{"leases"},
			ResourceNames: []string{ec.LeaseName},
			Verbs:         []string{"get", "update"},
		},
		{
			APIGroups: []string{"coordination.k8s.io"},
			Resources: []string{"leases"},
			Verbs:     []string{"create"},
		},
	}
}

// Allows reports whether rules permit verb on group/resource named name (""
// for a list, watch or create without a name).
func Allows(rules []rbacv1.PolicyRule, verb, group, resource, name string) bool {
	for _, r := range rules {
		if has(r.Verbs, verb) && has(r.APIGroups, group) && has(r.Resources, resource) &&
			(len(r.ResourceNames) == 0 || (name != "" && has(r.ResourceNames, name))) {
			return true
		}
	}
	return false
}

func has(list []string, s string) bool {
	for _, v := range list {
		if v == s || v == rbacv1.VerbAll {
			return true
		}
	}
	return false
}

// DiscoveryRules are the RBAC rules EndpointSliceTargets needs in the
// exporter's namespace, and no more: the streamer chart's discovery Role
// must grant exactly these (a test compares them), and the fake-clientset
// test checks every request discovery makes against them.
func DiscoveryRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{
		APIGroups: []string{"discovery.k8s.io"},
		Resources: []string{"endpointslices"},
		Verbs:     []string{"list", "watch"},
	}}
}
