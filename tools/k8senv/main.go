// Command k8senv is `make test-k8s`: it runs the Helm charts and the
// partition controller against a real control plane on 127.0.0.1 — etcd and
// kube-apiserver (and kube-controller-manager when built), compiled from
// source through the Go module proxy by this module (tool directives) and
// cached outside the checkout.
//
// It checks that the API server accepts every object the umbrella chart
// renders (server-side dry run with strict field validation), installs the
// chart, starts two partition controllers under the chart's own
// ServiceAccount and Role (a real RBAC check), scales the reader StatefulSet
// and waits for the ConfigMap and the pod-template checksum to follow, fails
// the leader over, scales below the reader HPA's minimum (the HPA controller
// scales back and the partition controller follows), and checks that a helm
// upgrade keeps the controller's state. Pods stay Pending: there are no
// nodes, which these checks do not need.
//
// Build, once: about 16 minutes of a busy 2-core machine for kube-apiserver,
// etcd and kube-controller-manager; a run then takes about 40 s.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	kubeVersion = "v1.37.2"
	ns          = "telemetry"
	nsAll       = "telemetry-all" // the every-option-on release
	release     = "telemetry"
	checksumKey = "telemetry.gpufleet.io/partitions-checksum"
)

type env struct {
	repo, bin, dir string
	procs          []*exec.Cmd
	admin          string // admin kubeconfig
	client         *kubernetes.Clientset
	restCfg        *rest.Config
}

func main() {
	repo := flag.String("repo", "../..", "repository root")
	bin := flag.String("bin", "", "directory of the built binaries (default: $XDG_CACHE_HOME/gpufleet-k8s/"+kubeVersion+")")
	keep := flag.Bool("keep", false, "keep the temporary directory (logs, certificates)")
	hold := flag.Duration("hold", 0, "on failure, keep the control plane running this long (for kubectl/helm --kubeconfig <dir>/kubeconfig-admin)")
	flag.Parse()
	log.SetFlags(log.Ltime)
	start := time.Now()
	e := &env{repo: mustAbs(*repo), bin: *bin}
	if e.bin == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			log.Fatal(err)
		}
		e.bin = filepath.Join(cache, "gpufleet-k8s", kubeVersion)
	}
	err := e.run()
	if err != nil && *hold > 0 {
		log.Printf("FAIL: %v; holding the control plane for %s: --kubeconfig %s", err, *hold, e.admin)
		time.Sleep(*hold)
	}
	e.stopAll()
	if *keep || err != nil {
		log.Printf("logs and certificates kept in %s", e.dir)
	} else if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
	if err != nil {
		log.Fatalf("FAIL after %s: %v", time.Since(start).Round(time.Second), err)
	}
	log.Printf("PASS in %s", time.Since(start).Round(time.Second))
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		log.Fatal(err)
	}
	return a
}

func (e *env) run() error {
	if err := e.build(); err != nil {
		return err
	}
	// The run's bound starts after the build: a cold build on a busy
	// machine took an hour, and the old bound (from the start) then failed
	// the first run waiting for etcd.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var err error
	if e.dir, err = os.MkdirTemp("", "k8senv-"); err != nil {
		return err
	}
	if err := e.certs(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	t0 := time.Now()
	if err := e.startControlPlane(ctx); err != nil {
		return err
	}
	log.Printf("control plane ready in %s", time.Since(t0).Round(100*time.Millisecond))

	if _, err := e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if err := e.installCRDs(ctx); err != nil {
		return err
	}
	if err := e.requireRejected(ctx); err != nil {
		return err
	}
	// Every custom resource is validated against its real CRD schema: the
	// defaults, an external URL, every option on (CloudNativePG with
	// synchronous replication and the Pooler, the adapter rules), KEDA.
	for _, values := range [][]string{nil,
		{"--set", "global.database.url=postgres://t:t@db:5432/t", "--set", "apigw.autoscaling.enabled=true"},
		{"-f", e.values("everything-on-values.yaml"), "--set", "prometheusAdapter.rules.namespace=" + ns},
		{"-f", e.values("keda-values.yaml")},
	} {
		if err := e.dryRunAll(ctx, values); err != nil {
			return err
		}
	}
	// And installed for real, every option on, in a namespace of its own
	// (the chart is one release per namespace).
	if _, err := e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsAll}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if _, err := e.helm("install", "tp-all", e.chart(), "-n", nsAll, "--no-hooks", "--kubeconfig", e.admin,
		"-f", e.values("everything-on-values.yaml"), "--set", "prometheusAdapter.rules.namespace="+nsAll); err != nil {
		return err
	}
	log.Printf("helm install with every option on: release tp-all deployed in %s", nsAll)
	if _, err := e.helm("install", release, e.chart(), "-n", ns, "--no-hooks", "--kubeconfig", e.admin); err != nil {
		return err
	}
	log.Printf("helm install: release %s deployed (hooks skipped: no nodes to run the migration Job)", release)
	if err := e.waitAssignment(ctx, 3); err != nil {
		return fmt.Errorf("initial assignment from the chart: %w", err)
	}

	pcBin := filepath.Join(e.dir, "partition-controller")
	if out, err := exec.Command("go", "-C", e.repo, "build", "-o", pcBin, "./apps/partition-controller").CombinedOutput(); err != nil {
		return fmt.Errorf("build partition-controller: %w\n%s", err, out)
	}
	saConfig, err := e.serviceAccountKubeconfig(ctx, "partition-controller")
	if err != nil {
		return err
	}
	a, err := e.startController(pcBin, saConfig, "pc-a")
	if err != nil {
		return err
	}
	holder, err := e.waitLeader(ctx, "")
	if err != nil {
		return err
	}
	b, err := e.startController(pcBin, saConfig, "pc-b")
	if err != nil {
		return err
	}
	log.Printf("leader: %s (controllers run as system:serviceaccount:%s:partition-controller)", holder, ns)

	for _, n := range []int32{5, 2} {
		if n == 2 {
			// Fail over: stop the leader; the standby takes the released lease.
			leader := map[string]*exec.Cmd{"pc-a": a, "pc-b": b}[holder]
			_ = leader.Process.Signal(syscall.SIGTERM)
			_, _ = leader.Process.Wait()
			t := time.Now()
			if holder, err = e.waitLeader(ctx, holder); err != nil {
				return err
			}
			log.Printf("failover: %s leads after %s", holder, time.Since(t).Round(10*time.Millisecond))
		}
		t := time.Now()
		if _, err := e.client.AppsV1().StatefulSets(ns).UpdateScale(ctx, "mqreader",
			&autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "mqreader", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: n}},
			metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("scale to %d: %w", n, err)
		}
		want := n
		if n == 2 && e.hasControllerManager() {
			// Below the reader HPA's minReplicas (3): the HPA controller
			// scales the StatefulSet back up, and the partition controller
			// follows the HPA.
			want = 3
		}
		if err := e.waitAssignment(ctx, int(want)); err != nil {
			return fmt.Errorf("after scaling to %d: %w", n, err)
		}
		if want != n {
			log.Printf("scaled to %d: the HPA restored its minimum %d and the ConfigMap and checksum followed, in %s", n, want, time.Since(t).Round(10*time.Millisecond))
		} else {
			log.Printf("scaled to %d: ConfigMap and checksum annotation followed in %s", n, time.Since(t).Round(10*time.Millisecond))
		}
	}

	sts, err := e.client.AppsV1().StatefulSets(ns).Get(ctx, "mqreader", metav1.GetOptions{})
	if err != nil {
		return err
	}
	before, replicas := sts.Spec.Template.Annotations[checksumKey], *sts.Spec.Replicas
	if _, err := e.helm("upgrade", release, e.chart(), "-n", ns, "--no-hooks", "--reuse-values", "--kubeconfig", e.admin); err != nil {
		return err
	}
	sts, err = e.client.AppsV1().StatefulSets(ns).Get(ctx, "mqreader", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := sts.Spec.Template.Annotations[checksumKey]; got != before || *sts.Spec.Replicas != replicas {
		return fmt.Errorf("helm upgrade changed controller state: checksum %s -> %s, replicas %d -> %d", before, got, replicas, *sts.Spec.Replicas)
	}
	if err := e.waitAssignment(ctx, int(replicas)); err != nil {
		return fmt.Errorf("after helm upgrade: %w", err)
	}
	log.Printf("helm upgrade kept the live assignment, checksum and replica count %d (lookup)", replicas)
	if e.hasControllerManager() {
		if err := e.waitPods(ctx, int(replicas)); err != nil {
			return err
		}
	}
	return nil
}

// build compiles the control plane into e.bin unless it is there already.
func (e *env) build() error {
	ldflags := "-s -w -X k8s.io/component-base/version.gitVersion=" + kubeVersion +
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" +
		" -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=" + kubeVersion
	self := filepath.Join(e.repo, "tools", "k8senv")
	for _, b := range []struct{ name, dir, pkg, ldflags string }{
		{"kube-apiserver", self, "k8s.io/kubernetes/cmd/kube-apiserver", ldflags},
		{"etcd", filepath.Join(self, "etcd"), "go.etcd.io/etcd/server/v3", "-s -w"},
		{"kube-controller-manager", self, "k8s.io/kubernetes/cmd/kube-controller-manager", ldflags},
	} {
		out := filepath.Join(e.bin, b.name)
		if _, err := os.Stat(out); err == nil {
			continue
		}
		log.Printf("building %s (cold: many minutes; cached in %s afterwards)", b.name, e.bin)
		t := time.Now()
		cmd := exec.Command("go", "-C", b.dir, "build", "-ldflags", b.ldflags, "-o", out, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", b.name, err)
		}
		log.Printf("built %s in %s", b.name, time.Since(t).Round(time.Second))
	}
	return nil
}

func (e *env) hasControllerManager() bool {
	_, err := os.Stat(filepath.Join(e.bin, "kube-controller-manager"))
	return err == nil
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

func (e *env) chart() string {
	return filepath.Join(e.repo, "deployments", "helm", "telemetry-pipeline")
}

// values is a file of the umbrella chart's ci/ folder.
func (e *env) values(name string) string { return filepath.Join(e.chart(), "ci", name) }

func (e *env) helm(args ...string) ([]byte, error) {
	cmd := exec.Command("go", append([]string{"-C", filepath.Join(e.repo, "tools"), "tool", "helm"}, args...)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+e.path("helm/cache"), "HELM_CONFIG_HOME="+e.path("helm/config"), "HELM_DATA_HOME="+e.path("helm/data"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", args[0], err, stderr.String())
	}
	return out, nil
}

// dryRunAll renders the umbrella chart and has the API server validate
// every object (dryRun=All: admission and validation, nothing stored).
func (e *env) dryRunAll(ctx context.Context, values []string) error {
	out, err := e.helm(append([]string{"template", release, e.chart(), "-n", ns, "--kube-version", kubeVersion}, values...)...)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(e.restCfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.client.Discovery()))
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	n := 0
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		var obj map[string]any
		if err := sigsyaml.Unmarshal(doc, &obj); err != nil {
			return err
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk, u.GetName(), err)
		}
		_, err = dyn.Resource(m.Resource).Namespace(ns).Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		if err != nil {
			return fmt.Errorf("API server refuses %s %s: %w", gvk.Kind, u.GetName(), err)
		}
		n++
	}
	log.Printf("API server accepts all %d rendered objects (server-side dry run, strict field validation; values %v)", n, values)
	return nil
}

// waitAssignment waits until the partitions ConfigMap holds an assignment
// for replicas readers covering 0..255 once, and the StatefulSet's pod
// template carries its checksum.
func (e *env) waitAssignment(ctx context.Context, replicas int) error {
	var last error
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		last = e.checkAssignment(ctx, replicas)
		if last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

func (e *env) checkAssignment(ctx context.Context, replicas int) error {
	cm, err := e.client.CoreV1().ConfigMaps(ns).Get(ctx, "mqreader-partitions", metav1.GetOptions{})
	if err != nil {
		return err
	}
	data := cm.Data["partitions.json"]
	var a struct {
		Replicas int               `json:"replicas"`
		Ranges   map[string]string `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(data), &a); err != nil {
		return fmt.Errorf("partitions.json: %w", err)
	}
	if a.Replicas != replicas || len(a.Ranges) != replicas {
		return fmt.Errorf("assignment for %d readers, want %d: %s", a.Replicas, replicas, data)
	}
	owners := make([]int, 256)
	for i := range replicas {
		r, ok := a.Ranges["mqreader-"+strconv.Itoa(i)]
		if !ok {
			return fmt.Errorf("mqreader-%d has no range: %s", i, data)
		}
		lo, hi, _ := strings.Cut(r, "-")
		first, err1 := strconv.Atoi(lo)
		last, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || first > last || last > 255 {
			return fmt.Errorf("bad range %q", r)
		}
		for p := first; p <= last; p++ {
			owners[p]++
		}
	}
	for p, n := range owners {
		if n != 1 {
			return fmt.Errorf("partition %d owned %d times: %s", p, n, data)
		}
	}
	sts, err := e.client.AppsV1().StatefulSets(ns).Get(ctx, "mqreader", metav1.GetOptions{})
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(data))
	if got, want := sts.Spec.Template.Annotations[checksumKey], hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("checksum annotation %q, want %q", got, want)
	}
	return nil
}

func (e *env) waitLeader(ctx context.Context, not string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		l, err := e.client.CoordinationV1().Leases(ns).Get(ctx, "partition-controller", metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && *l.Spec.HolderIdentity != not {
			return *l.Spec.HolderIdentity, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("no leader (other than %q) within 60s", not)
}

func (e *env) waitPods(ctx context.Context, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		pods, err := e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=mqreader"})
		if err == nil && len(pods.Items) == n {
			log.Printf("the StatefulSet controller runs %d reader pods (Pending: no nodes)", n)
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("reader pods did not reach %d", n)
}

// serviceAccountKubeconfig returns a kubeconfig authenticating as the
// chart's ServiceAccount, with a token from the TokenRequest API.
func (e *env) serviceAccountKubeconfig(ctx context.Context, sa string) (string, error) {
	exp := int64(3600)
	tr, err := e.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", sa, err)
	}
	path := e.path("kubeconfig-" + sa)
	return path, writeKubeconfig(path, e.restCfg.Host, e.path("ca.crt"), "", "", tr.Status.Token)
}

func (e *env) startController(bin, kubeconfig, id string) (*exec.Cmd, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "NAMESPACE="+ns, "POD_NAME="+id,
		"HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port), "RETRY_PERIOD_SECONDS=1", "RENEW_DEADLINE_SECONDS=5", "LEASE_DURATION_SECONDS=10")
	return cmd, e.start(cmd, id)
}

// start runs cmd in its own process group with its output in <name>.log.
func (e *env) start(cmd *exec.Cmd, name string) error {
	f, err := os.Create(e.path(name + ".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	e.procs = append(e.procs, cmd)
	return nil
}

// stopAll stops every process it started, newest first, and waits for them.
func (e *env) stopAll() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		if p.ProcessState != nil {
			continue
		}
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = p.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func (e *env) startControlPlane(ctx context.Context) error {
	etcdPort, _ := freePort()
	peerPort, _ := freePort()
	apiPort, _ := freePort()
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if err := e.start(exec.Command(filepath.Join(e.bin, "etcd"),
		"--data-dir", e.path("etcd"), "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync"), "etcd"); err != nil {
		return err
	}
	if err := waitHTTP(ctx, etcdURL+"/health", nil, 60*time.Second); err != nil {
		return fmt.Errorf("etcd: %w (see %s)", err, e.path("etcd.log"))
	}
	if err := e.start(exec.Command(filepath.Join(e.bin, "kube-apiserver"),
		"--etcd-servers", etcdURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort), "--cert-dir", e.path("apiserver"),
		"--tls-cert-file", e.path("apiserver.crt"), "--tls-private-key-file", e.path("apiserver.key"),
		"--client-ca-file", e.path("ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", e.path("sa.pub"), "--service-account-signing-key-file", e.path("sa.key"),
		"--service-cluster-ip-range", "10.0.0.0/24", "--authorization-mode", "Node,RBAC",
		"--endpoint-reconciler-type", "none"), "kube-apiserver"); err != nil {
		return err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	e.admin = e.path("kubeconfig-admin")
	if err := writeKubeconfig(e.admin, host, e.path("ca.crt"), e.path("admin.crt"), e.path("admin.key"), ""); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(e.path("admin.crt"), e.path("admin.key"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(e.path("ca.crt"))
	pool.AppendCertsFromPEM(caPEM)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	if err := waitHTTP(ctx, host+"/readyz", tlsCfg, 120*time.Second); err != nil {
		return fmt.Errorf("kube-apiserver: %w (see %s)", err, e.path("kube-apiserver.log"))
	}
	if e.restCfg, err = clientcmd.BuildConfigFromFlags("", e.admin); err != nil {
		return err
	}
	if e.client, err = kubernetes.NewForConfig(e.restCfg); err != nil {
		return err
	}
	if e.hasControllerManager() {
		kcmPort, _ := freePort()
		if err := e.start(exec.Command(filepath.Join(e.bin, "kube-controller-manager"),
			"--kubeconfig", e.admin, "--authentication-kubeconfig", e.admin, "--authorization-kubeconfig", e.admin,
			"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(kcmPort),
			"--service-account-private-key-file", e.path("sa.key"), "--root-ca-file", e.path("ca.crt"),
			"--use-service-account-credentials=true", "--leader-elect=false", "--controllers=*"), "kube-controller-manager"); err != nil {
			return err
		}
	}
	return nil
}

func waitHTTP(ctx context.Context, url string, tlsCfg *tls.Config, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready: %w", url, last)
}

func writeKubeconfig(path, server, ca, cert, key, token string) error {
	user := map[string]any{}
	if token != "" {
		user["token"] = token
	} else {
		user["client-certificate"], user["client-key"] = cert, key
	}
	cfg := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "k8senv",
		"clusters": []any{map[string]any{"name": "k8senv", "cluster": map[string]any{"server": server, "certificate-authority": ca}}},
		"users":    []any{map[string]any{"name": "k8senv", "user": user}},
		"contexts": []any{map[string]any{"name": "k8senv", "context": map[string]any{"cluster": "k8senv", "user": "k8senv"}}},
	}
	b, err := sigsyaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// certs writes a CA, the API server's serving certificate, an admin client
// certificate (group system:masters) and the service-account key pair.
func (e *env) certs() error {
	caKey, caCert, err := newCert(nil, nil, x509.Certificate{
		Subject: pkix.Name{CommonName: "k8senv-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, e.path("ca"))
	if err != nil {
		return err
	}
	if _, _, err := newCert(caKey, caCert, x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, e.path("apiserver")); err != nil {
		return err
	}
	if _, _, err := newCert(caKey, caCert, x509.Certificate{
		Subject:  pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, e.path("admin")); err != nil {
		return err
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(e.path("sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return err
	}
	return writePEM(e.path("sa.pub"), "PUBLIC KEY", pub)
}

func newCert(parentKey *ecdsa.PrivateKey, parent *x509.Certificate, tmpl x509.Certificate, base string) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = &tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(base+".crt", "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	return key, cert, writePEM(base+".key", "EC PRIVATE KEY", keyDER)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
