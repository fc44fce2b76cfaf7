package k8s_test

import (
	"net"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// endpoint is one end of a connection for the NetworkPolicy evaluator: a
// pod (namespace and labels) or, with no labels, an address outside the
// cluster's pods.
type endpoint struct {
	name   string
	ns     string
	labels map[string]string
	ip     string
}

func podIn(ns string, l map[string]string) endpoint {
	return endpoint{name: ns + "/" + labels.Set(l).String(), ns: ns, labels: l}
}

func address(ip string) endpoint { return endpoint{name: ip, ip: ip} }

// allowed evaluates the release's NetworkPolicies as the API defines them:
// a pod selected by a policy of a direction is isolated in that direction,
// and a connection needs the source's egress and the destination's ingress
// (each allowed by some rule: peers empty or one matching, ports empty or one
// matching). Only pods of the release's namespace can be selected.
func allowed(r release, from, to endpoint, port int32, proto corev1.Protocol) bool {
	return directionAllows(r, networkingv1.PolicyTypeEgress, from, to, port, proto) &&
		directionAllows(r, networkingv1.PolicyTypeIngress, to, from, port, proto)
}

func directionAllows(r release, dir networkingv1.PolicyType, self, peer endpoint, port int32, proto corev1.Protocol) bool {
	if self.labels == nil || self.ns != namespace {
		return true // not a pod these policies can select
	}
	isolated := false
	for _, p := range typed[networkingv1.NetworkPolicy](r) {
		if !selects(p.Spec.PodSelector, self.labels) || !hasType(p, dir) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeEgress {
			for _, rule := range p.Spec.Egress {
				if portsMatch(rule.Ports, port, proto) && peersMatch(rule.To, p.Namespace, peer) {
					return true
				}
			}
		} else {
			for _, rule := range p.Spec.Ingress {
				if portsMatch(rule.Ports, port, proto) && peersMatch(rule.From, p.Namespace, peer) {
					return true
				}
			}
		}
	}
	return !isolated
}

// selects reports whether sel matches the labels l; a selector the label
// package refuses matches nothing (checkNetworkPolicies fails on it).
func selects(sel metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(&sel)
	return err == nil && s.Matches(labels.Set(l))
}

func validSelector(t *testing.T, sel *metav1.LabelSelector, policy string) {
	t.Helper()
	if sel != nil {
		_, err := metav1.LabelSelectorAsSelector(sel)
		require.NoError(t, err, "NetworkPolicy %s", policy)
	}
}

func hasType(p *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	for _, t := range p.Spec.PolicyTypes {
		if t == dir {
			return true
		}
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, port int32, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if deref(p.Protocol, corev1.ProtocolTCP) != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		first := p.Port.IntVal // named ports are not used by the charts (checkNetworkPolicies)
		if port == first || (p.EndPort != nil && port >= first && port <= *p.EndPort) {
			return true
		}
	}
	return false
}

func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, e endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			if e.ip == "" {
				continue
			}
			_, cidr, err := net.ParseCIDR(p.IPBlock.CIDR)
			if err != nil || !cidr.Contains(net.ParseIP(e.ip)) {
				continue
			}
			excepted := false
			for _, ex := range p.IPBlock.Except {
				if _, c, err := net.ParseCIDR(ex); err == nil && c.Contains(net.ParseIP(e.ip)) {
					excepted = true
				}
			}
			if !excepted {
				return true
			}
			continue
		}
		if e.labels == nil {
			continue
		}
		nsOK := e.ns == policyNS
		if p.NamespaceSelector != nil {
			nsOK = selects(*p.NamespaceSelector, map[string]string{"kubernetes.io/metadata.name": e.ns})
		}
		podOK := p.PodSelector == nil || selects(*p.PodSelector, e.labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// checkNetworkPolicies: when the charts render policies, every workload's
// pods (and the migration Job's) are selected by one that isolates them in
// both directions, and the policies are well-formed (numeric ports, valid
// selectors and CIDRs).
func checkNetworkPolicies(t *testing.T, r release) {
	t.Helper()
	policies := typed[networkingv1.NetworkPolicy](r)
	if len(policies) == 0 {
		return
	}
	for _, p := range policies {
		validSelector(t, &p.Spec.PodSelector, p.Name)
		var rules [][]networkingv1.NetworkPolicyPeer
		var ports [][]networkingv1.NetworkPolicyPort
		for _, in := range p.Spec.Ingress {
			rules, ports = append(rules, in.From), append(ports, in.Ports)
		}
		for _, out := range p.Spec.Egress {
			rules, ports = append(rules, out.To), append(ports, out.Ports)
		}
		for _, peers := range rules {
			for _, peer := range peers {
				validSelector(t, peer.PodSelector, p.Name)
				validSelector(t, peer.NamespaceSelector, p.Name)
				if peer.IPBlock != nil {
					_, _, err := net.ParseCIDR(peer.IPBlock.CIDR)
					require.NoError(t, err, "NetworkPolicy %s", p.Name)
				}
			}
		}
		for _, ps := range ports {
			for _, port := range ps {
				if port.Port != nil {
					require.NotZero(t, port.Port.IntVal, "NetworkPolicy %s: numeric ports only", p.Name)
				}
			}
		}
	}
	pods := map[string]map[string]string{}
	for _, w := range workloads(r) {
		pods[w.kind+"/"+w.name] = w.template.Labels
	}
	for _, j := range typed[batchv1.Job](r) {
		pods["Job/"+j.Name] = j.Spec.Template.Labels
	}
	for key, l := range pods {
		var in, out bool
		for _, p := range policies {
			if selects(p.Spec.PodSelector, l) {
				in = in || hasType(p, networkingv1.PolicyTypeIngress)
				out = out || hasType(p, networkingv1.PolicyTypeEgress)
			}
		}
		require.True(t, in && out, "%s: no NetworkPolicy isolates its pods in both directions", key)
	}
	// No Service is dead behind its policy: some ingress rule of its pods
	// opens its port (to Prometheus at least).
	for _, s := range typed[corev1.Service](r) {
		w := matching(r, s.Spec.Selector)
		require.NotNil(t, w)
		port := w.template.Spec.Containers[0].Ports[0].ContainerPort
		open := false
		for _, p := range policies {
			if selects(p.Spec.PodSelector, w.template.Labels) {
				for _, rule := range p.Spec.Ingress {
					open = open || portsMatch(rule.Ports, port, corev1.ProtocolTCP)
				}
			}
		}
		require.True(t, open, "Service %s: no ingress rule opens port %d", s.Name, port)
	}
}

// TestNetworkPolicyReachability checks who may talk to whom under the
// rendered policies, for the default values (external database), CloudNativePG
// with NATS, and a scraping streamer.
func TestNetworkPolicyReachability(t *testing.T) {
	t.Parallel()
	pod := func(r release, name string) endpoint {
		w := matching(r, map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "tp"})
		require.NotNil(t, w, name)
		return podIn(namespace, w.template.Labels)
	}
	apps := []string{"mqwriter", "mqreader", "collector", "streamer", "apigw", "partition-controller"}
	dbApps := map[string]bool{"mqwriter": true, "mqreader": true, "collector": true, "apigw": true}
	// calls are the pipeline's own connections between apps.
	calls := map[[2]string]bool{{"streamer", "mqwriter"}: true, {"collector", "mqreader"}: true}
	prometheus := podIn("monitoring", map[string]string{"app.kubernetes.io/name": "prometheus"})
	stranger := podIn("default", map[string]string{"app": "curl"})
	dns := podIn("kube-system", map[string]string{"k8s-app": "kube-dns"})
	migrate := podIn(namespace, map[string]string{"app.kubernetes.io/name": "migrate", "app.kubernetes.io/instance": "tp"})
	externalDB := address("10.20.0.5")
	apiServer := address("10.0.0.1")
	cnpgPod := podIn(namespace, map[string]string{"cnpg.io/cluster": "tp-pg", "cnpg.io/instanceRole": "primary"})
	nats := podIn("nats", map[string]string{"app.kubernetes.io/name": "nats"})

	common := func(t *testing.T, r release) {
		for _, a := range apps {
			from := pod(r, a)
			for _, b := range apps {
				to := pod(r, b)
				want := calls[[2]string{a, b}]
				require.Equal(t, want, allowed(r, from, to, appPorts[b], corev1.ProtocolTCP), "%s -> %s:%d", a, b, appPorts[b])
			}
			require.True(t, allowed(r, prometheus, from, appPorts[a], corev1.ProtocolTCP), "Prometheus scrapes %s", a)
			require.Equal(t, a == "apigw", allowed(r, stranger, from, appPorts[a], corev1.ProtocolTCP), "a pod elsewhere -> %s", a)
			require.True(t, allowed(r, from, dns, 53, corev1.ProtocolUDP), "%s resolves names", a)
			require.True(t, allowed(r, from, dns, 53, corev1.ProtocolTCP), "%s resolves names over TCP", a)
			require.False(t, allowed(r, from, stranger, 80, corev1.ProtocolTCP), "%s -> a pod elsewhere", a)
			require.False(t, allowed(r, from, migrate, 5432, corev1.ProtocolTCP), "%s -> the migration Job", a)
			require.Equal(t, a == "partition-controller", allowed(r, from, apiServer, 443, corev1.ProtocolTCP), "%s -> the API server", a)
		}
		require.True(t, allowed(r, pod(r, "partition-controller"), apiServer, 6443, corev1.ProtocolTCP), "the controller reaches the API server's endpoints")
		require.True(t, allowed(r, pod(r, "collector"), pod(r, "mqreader"), 8082, corev1.ProtocolTCP), "through mqreader-headless too: the same pods and port")
		require.False(t, allowed(r, pod(r, "mqwriter"), pod(r, "mqreader"), 8082, corev1.ProtocolTCP))
		require.False(t, allowed(r, stranger, migrate, 8080, corev1.ProtocolTCP), "nothing calls the migration Job")
		require.True(t, allowed(r, migrate, dns, 53, corev1.ProtocolUDP))
	}

	t.Run("defaults: external database", func(t *testing.T) {
		t.Parallel()
		r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline"))}
		common(t, r)
		for _, a := range apps {
			require.Equal(t, dbApps[a], allowed(r, pod(r, a), externalDB, 5432, corev1.ProtocolTCP), "%s -> PostgreSQL", a)
			require.False(t, allowed(r, pod(r, a), externalDB, 5433, corev1.ProtocolTCP), "%s -> another port", a)
			require.False(t, allowed(r, pod(r, a), nats, 4222, corev1.ProtocolTCP), "%s -> NATS (off)", a)
		}
		require.True(t, allowed(r, migrate, externalDB, 5432, corev1.ProtocolTCP))
	})

	t.Run("cnpg, NATS, narrowed API and Prometheus", func(t *testing.T) {
		t.Parallel()
		r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline",
			"--set", "global.database.mode=cnpg",
			"--set", "global.networkPolicy.nats.enabled=true",
			"--set", "global.networkPolicy.nats.to[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=nats",
			"--set", "global.networkPolicy.kubeAPI.to[0].ipBlock.cidr=10.0.0.1/32",
			"--set", "apigw.networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=ingress",
		))}
		for _, a := range apps {
			from := pod(r, a)
			require.Equal(t, dbApps[a], allowed(r, from, cnpgPod, 5432, corev1.ProtocolTCP), "%s -> the CloudNativePG pods", a)
			require.False(t, allowed(r, from, externalDB, 5432, corev1.ProtocolTCP), "%s -> any other PostgreSQL", a)
			queue := a == "mqwriter" || a == "mqreader" || a == "collector" || a == "streamer"
			require.Equal(t, queue, allowed(r, from, nats, 4222, corev1.ProtocolTCP), "%s -> NATS", a)
			require.False(t, allowed(r, from, address("8.8.8.8"), 443, corev1.ProtocolTCP), "%s -> the internet", a)
			require.Equal(t, a == "partition-controller", allowed(r, from, apiServer, 443, corev1.ProtocolTCP), "%s -> the API server", a)
		}
		require.True(t, allowed(r, migrate, cnpgPod, 5432, corev1.ProtocolTCP))
		require.True(t, allowed(r, pod(r, "apigw"), podIn(namespace, map[string]string{"cnpg.io/poolerName": "tp-pooler-rw"}), 5432, corev1.ProtocolTCP), "a CloudNativePG Pooler")
		ingress := podIn("ingress", map[string]string{"app": "nginx"})
		require.True(t, allowed(r, ingress, pod(r, "apigw"), 8080, corev1.ProtocolTCP), "apigw from the ingress controller")
		require.False(t, allowed(r, stranger, pod(r, "apigw"), 8080, corev1.ProtocolTCP), "apigw only from ingressFrom")
	})

	t.Run("scraping streamer", func(t *testing.T) {
		t.Parallel()
		r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", "-f", repoPath(t, "deployments", "helm", "telemetry-pipeline", "ci", "scrape-values.yaml")))}
		streamer := pod(r, "streamer")
		exporter := podIn("gpu-operator", map[string]string{"app": "nvidia-dcgm-exporter"})
		require.True(t, allowed(r, streamer, exporter, 9400, corev1.ProtocolTCP), "the streamer scrapes dcgm-exporter")
		require.False(t, allowed(r, streamer, exporter, 9401, corev1.ProtocolTCP))
		require.True(t, allowed(r, streamer, apiServer, 443, corev1.ProtocolTCP), "discovery watches EndpointSlices")
		require.False(t, allowed(r, pod(r, "collector"), exporter, 9400, corev1.ProtocolTCP))
	})

	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", "--set", "global.networkPolicy.enabled=false"))}
		require.Empty(t, typed[networkingv1.NetworkPolicy](r))
	})
}

// checkTokens: the queue's servers read every accepted token and its
// clients the one they send, each from a file mounted from the scope's
// Secret through the *_FILE variables; a rendered Secret holds a long
// random token that its "tokens" list accepts, and no token is in a
// ConfigMap or a plain env value.
func checkTokens(t *testing.T, r release) {
	t.Helper()
	want := map[string]string{
		"mqwriter": "MQ_PUBLISH_TOKENS_FILE", "mqreader": "MQ_CONSUME_TOKENS_FILE",
		"streamer": "MQ_PUBLISH_TOKEN_FILE", "collector": "MQ_CONSUME_TOKEN_FILE",
	}
	secretOf := map[string]string{}
	for _, w := range workloads(r) {
		c := w.template.Spec.Containers[0]
		env := envOf(t, r, c)
		variable, ok := want[c.Name]
		if !ok {
			for k := range env {
				require.NotContains(t, k, "TOKEN", "%s has no business with queue tokens", w.name)
			}
			continue
		}
		if env["MQ_AUTH"] == "none" {
			require.NotContains(t, []string{"streamer", "collector"}, c.Name, "MQ_AUTH is the servers' setting")
			require.Empty(t, env[variable])
			continue
		}
		file := env[variable]
		require.NotEmpty(t, file, "%s: %s", w.name, variable)
		mount, ok := mountOf(c, "queue-token")
		require.True(t, ok, "%s mounts its token", w.name)
		require.True(t, mount.ReadOnly)
		require.Equal(t, mount.MountPath, path.Dir(file))
		v, ok := volumeOf(w.template.Spec, "queue-token")
		require.True(t, ok)
		require.NotNil(t, v.Secret, "%s: the token comes from a Secret", w.name)
		require.Len(t, v.Secret.Items, 1)
		require.Equal(t, path.Base(file), v.Secret.Items[0].Path)
		wantKey := "token"
		if strings.HasSuffix(variable, "TOKENS_FILE") {
			wantKey = "tokens"
		}
		require.Equal(t, wantKey, v.Secret.Items[0].Key, "%s: servers read the list, clients the one token", w.name)
		require.EqualValues(t, 0o440, deref(v.Secret.DefaultMode, 0o644), "%s: token readable by owner and group only", w.name)
		secretOf[c.Name] = v.Secret.SecretName
	}
	pairs := [][2]string{{"mqwriter", "streamer"}, {"mqreader", "collector"}}
	for _, p := range pairs {
		if secretOf[p[0]] != "" && secretOf[p[1]] != "" {
			require.Equal(t, secretOf[p[0]], secretOf[p[1]], "%s and %s share one Secret", p[0], p[1])
		}
	}
	if secretOf["mqwriter"] != "" {
		require.NotEqual(t, secretOf["mqwriter"], secretOf["mqreader"], "publish and consume tokens differ")
	}

	var plain []string
	for _, cm := range typed[corev1.ConfigMap](r) {
		for _, v := range cm.Data {
			plain = append(plain, v)
		}
	}
	for _, w := range workloads(r) {
		for _, e := range w.template.Spec.Containers[0].Env {
			plain = append(plain, e.Value)
		}
	}
	for _, s := range typed[corev1.Secret](r) {
		if s.Annotations["telemetry.gpufleet.io/scope"] == "" {
			continue
		}
		token := string(s.Data["token"])
		require.GreaterOrEqual(t, len(token), 32, "Secret %s: a long token", s.Name)
		require.Regexp(t, `^[A-Za-z0-9]+$`, token)
		require.Contains(t, strings.Split(string(s.Data["tokens"]), "\n"), token, "Secret %s: the servers accept the clients' token", s.Name)
		for _, v := range plain {
			require.NotContains(t, v, token, "Secret %s's token leaks into a ConfigMap or env value", s.Name)
		}
	}
}

// TestTokenSecretOptions: an existing Secret replaces the generated one;
// auth off runs the servers with MQ_AUTH=none and mounts nothing; two
// renders generate different tokens (in helm template lookup finds
// nothing; tools/helmlookup checks that an upgrade keeps the live ones).
func TestTokenSecretOptions(t *testing.T) {
	t.Parallel()
	t.Run("existing secrets", func(t *testing.T) {
		t.Parallel()
		r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline",
			"--set", "global.auth.publish.existingSecret=my-publish", "--set", "global.auth.consume.existingSecret=my-consume"))}
		for _, s := range typed[corev1.Secret](r) {
			require.Empty(t, s.Annotations["telemetry.gpufleet.io/scope"], "no token Secret generated: %s", s.Name)
		}
		for app, secret := range map[string]string{"mqwriter": "my-publish", "streamer": "my-publish", "mqreader": "my-consume", "collector": "my-consume"} {
			w := matching(r, map[string]string{"app.kubernetes.io/name": app})
			v, ok := volumeOf(w.template.Spec, "queue-token")
			require.True(t, ok, app)
			require.Equal(t, secret, v.Secret.SecretName, app)
		}
		checkTokens(t, r)
	})
	t.Run("auth off", func(t *testing.T) {
		t.Parallel()
		r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", "--set", "global.auth.enabled=false"))}
		require.Empty(t, typed[corev1.Secret](r))
		for _, w := range workloads(r) {
			_, ok := volumeOf(w.template.Spec, "queue-token")
			require.False(t, ok, w.name)
			env := envOf(t, r, w.template.Spec.Containers[0])
			require.Equal(t, w.name == "mqwriter" || w.name == "mqreader", env["MQ_AUTH"] == "none", w.name)
		}
	})
	t.Run("generated per install", func(t *testing.T) {
		t.Parallel()
		token := func() string {
			r := release{name: "tp", objs: decodeAll(t, template(t, "mqwriter", "--show-only", "templates/secret-tokens.yaml"))}
			s := one[corev1.Secret](r, "mqwriter-tokens")
			require.NotNil(t, s)
			return string(s.Data["token"])
		}
		require.NotEqual(t, token(), token())
	})
}

// checkRoles: with CloudNativePG and per-app roles, every app that uses the
// database reads the URL of its own role, a managed role of the Cluster
// whose password Secret is rendered; the owner (the migrator) is only the
// migration Job's.
func checkRoles(t *testing.T, r release) {
	t.Helper()
	cluster := one[cnpgCluster](r, "tp-pg")
	if cluster == nil || cluster.Spec.Managed == nil {
		return
	}
	roles := map[string]cnpgRole{}
	for _, role := range cluster.Spec.Managed.Roles {
		roles[role.Name] = role
	}
	for _, w := range workloads(r) {
		c := w.template.Spec.Containers[0]
		e, ok := envVar(c, "DATABASE_URL")
		if !ok {
			continue
		}
		role, ok := roles["telemetry_"+c.Name]
		require.True(t, ok, "%s has a managed role", c.Name)
		require.True(t, role.Login)
		require.Equal(t, "present", role.Ensure)
		require.NotNil(t, role.PasswordSecret)
		require.Equal(t, role.PasswordSecret.Name, e.ValueFrom.SecretKeyRef.Name, "%s logs in as its own role", c.Name)
		s := one[corev1.Secret](r, role.PasswordSecret.Name)
		require.NotNil(t, s)
		require.Equal(t, corev1.SecretTypeBasicAuth, s.Type, "CloudNativePG reads basic-auth Secrets")
		require.Equal(t, role.Name, string(s.Data["username"]))
		require.GreaterOrEqual(t, len(s.Data["password"]), 32)
		uri := string(s.Data[e.ValueFrom.SecretKeyRef.Key])
		// -rw, or the Pooler's service when global.database.pooler is on.
		login := "postgresql://" + role.Name + ":" + string(s.Data["password"]) + "@"
		rest := ".svc:5432/" + cluster.Spec.Bootstrap.InitDB.Database + "?"
		require.True(t, strings.HasPrefix(uri, login+"tp-pg-rw."+namespace+rest) || strings.HasPrefix(uri, login+"tp-pg-pooler-rw."+namespace+rest), uri)
		require.Equal(t, c.Name == "apigw", strings.Contains(uri, "default_transaction_read_only=on"), "%s: read-only sessions", c.Name)
		require.Equal(t, c.Name == "collector", len(role.InRoles) > 0, "%s: only the collector (partition maintenance) is in the owner's role", c.Name)
		if c.Name == "collector" {
			require.Equal(t, []string{cluster.Spec.Bootstrap.InitDB.Owner}, role.InRoles)
		}
		require.Equal(t, "false", envOf(t, r, c)["MIGRATE_ON_START"], "%s cannot migrate with its role", c.Name)
	}
	j := one[batchv1.Job](r, "tp-migrate")
	require.NotNil(t, j, "the roles need the migration Job (grants)")
}
