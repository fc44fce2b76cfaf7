package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// FieldManager names the controller's writes in managedFields.
const FieldManager = "partition-controller"

// Controller keeps the readers' partition assignment in step with the
// StatefulSet's replica count. Its configuration is immutable after New; the
// per-run state (informers, queue) lives in Run, so a Controller can run again
// after its Run returned (RunElected does so after losing and regaining the
// lease).
type Controller struct {
	client  kubernetes.Interface
	cfg     Config
	logger  *slog.Logger
	metrics *metrics

	// synced is true while Run's informer caches are synced; read by Check.
	synced atomic.Bool
	// leading is true while RunElected holds the lease; read by Check.
	leading atomic.Bool
	// elected is true when the controller runs under RunElected.
	elected atomic.Bool
}

// New builds a Controller. logger nil means slog.Default(); reg nil
// registers no metrics.
func New(client kubernetes.Interface, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Controller, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("partition controller: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("partition controller: %w", err)
	}
	return &Controller{
		client:  client,
		cfg:     cfg,
		logger:  logger.With("statefulset", cfg.Namespace+"/"+cfg.StatefulSet),
		metrics: m,
	}, nil
}

// Config returns the effective configuration (defaults filled in).
func (c *Controller) Config() Config { return c.cfg }

// AssignmentData returns the ConfigMap value the controller writes for a
// StatefulSet with the given replica count, and its checksum (the value of
// ChecksumAnnotation). The JSON is deterministic: equal assignments give
// equal bytes.
func AssignmentData(statefulSet string, replicas int) (data []byte, checksum string, err error) {
	a, err := domain.Assign(statefulSet, replicas)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err)
	}
	data, err = json.Marshal(a)
	if err != nil {
		return nil, "", fmt.Errorf("encode assignment: %w", err)
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:]), nil
}

// Run runs the controller until ctx is done, without leader election (one
// replica, or tests; see RunElected). It starts informers on the StatefulSet
// and the ConfigMap, waits for their caches, syncs once, then syncs on every
// change. It returns after every goroutine it started has stopped.
func (c *Controller) Run(ctx context.Context) error {
	key := c.cfg.Namespace + "/" + c.cfg.StatefulSet
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "partitions"},
	)
	// Two factories: each is narrowed to one object by name, which keeps the
	// caches tiny and lets the Role grant list/watch by resourceNames.
	stsFactory := c.factory(c.cfg.StatefulSet)
	cmFactory := c.factory(c.cfg.ConfigMap)
	stsInformer := stsFactory.Apps().V1().StatefulSets().Informer()
	cmInformer := cmFactory.Core().V1().ConfigMaps().Informer()
	if _, err := stsInformer.AddEventHandler(c.handler(queue, key, c.cfg.StatefulSet)); err != nil {
		return fmt.Errorf("statefulset informer: %w", err)
	}
	if _, err := cmInformer.AddEventHandler(c.handler(queue, key, c.cfg.ConfigMap)); err != nil {
		return fmt.Errorf("configmap informer: %w", err)
	}

	var workers sync.WaitGroup
	defer func() {
		queue.ShutDown()
		workers.Wait()
		stsFactory.Shutdown() // waits for the informers' goroutines
		cmFactory.Shutdown()
		c.synced.Store(false)
	}()
	stsFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), stsInformer.HasSynced, cmInformer.HasSynced) {
		return nil // ctx done before the caches synced
	}
	c.synced.Store(true)
	c.logger.Info("partition controller running", "configmap", c.cfg.ConfigMap)
	queue.Add(key) // an initial sync even when no informer event arrives
	// One worker: there is one key, and the workqueue never hands a key to
	// two workers at once anyway.
	workers.Go(func() {
		for c.processNext(ctx, queue) {
		}
	})
	<-ctx.Done()
	return nil
}

func (c *Controller) factory(name string) informers.SharedInformerFactory {
	return informers.NewSharedInformerFactoryWithOptions(c.client, c.cfg.Resync,
		informers.WithNamespace(c.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}),
	)
}

// handler enqueues key for every event on the object called name. The field
// selector already narrows the watch; the name check keeps the controller
// correct against servers (and fakes) that ignore it.
func (c *Controller) handler(queue workqueue.TypedRateLimitingInterface[string], key, name string) cache.ResourceEventHandler {
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, err := meta(obj); err == nil && m.GetName() == name {
			queue.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
}

func meta(obj any) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	return m, nil
}

// processNext runs one sync; false means the queue is shut down.
func (c *Controller) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	err := c.Sync(ctx)
	switch {
	case err == nil:
		queue.Forget(key)
	case ctx.Err() != nil:
		queue.Forget(key) // shutting down; the next leader syncs
	case errors.Is(err, ports.ErrInvalidArgument):
		// Retrying cannot help (e.g. more replicas than partitions); the
		// next change of the StatefulSet is synced again.
		queue.Forget(key)
		c.logger.Error("partition sync refused; waiting for the next change", "err", err)
	case errors.Is(err, errConflict):
		// Expected now and then: the StatefulSet controller updates the
		// status (and so the resourceVersion) while pods come and go.
		queue.AddRateLimited(key)
		c.logger.Info("partition sync raced another write; retrying", "err", err)
	default:
		queue.AddRateLimited(key)
		c.logger.Warn("partition sync failed; retrying", "err", err, "retries", queue.NumRequeues(key))
	}
	return true
}

// Sync reconciles once: it reads the StatefulSet, computes the assignment for
// its replica count, writes the ConfigMap when its content differs, then
// patches the pod-template checksum annotation when it differs. It is
// idempotent: when both already match it writes nothing. Both objects are
// read live rather than from the informer caches, so a sync that follows the
// controller's own write never sees the old state and writes twice; with one
// StatefulSet that costs two GETs per event.
//
// The ConfigMap is written before the annotation so that every pod the
// rollout restarts mounts the new ranges. The patch carries the
// resourceVersion the assignment was computed from: if the StatefulSet was
// scaled again in between, the patch conflicts and the sync runs again,
// rather than rolling the readers onto a stale assignment.
func (c *Controller) Sync(ctx context.Context) (err error) {
	start := time.Now()
	defer func() {
		c.metrics.syncSeconds.Observe(time.Since(start).Seconds())
		switch {
		case err == nil:
			c.metrics.syncs.WithLabelValues(resultOK).Inc()
		case errors.Is(err, ports.ErrInvalidArgument):
			c.metrics.syncs.WithLabelValues(resultInvalid).Inc()
		default:
			c.metrics.syncs.WithLabelValues(resultError).Inc()
		}
	}()

	sts, err := c.client.AppsV1().StatefulSets(c.cfg.Namespace).Get(ctx, c.cfg.StatefulSet, metav1.GetOptions{})
	if err = translate(err); errors.Is(err, ports.ErrNotFound) {
		c.logger.Info("statefulset not found; nothing to assign")
		return nil
	} else if err != nil {
		return fmt.Errorf("get statefulset %s: %w", c.cfg.StatefulSet, err)
	}
	replicas := 1 // the API server's default for an unset spec.replicas
	if sts.Spec.Replicas != nil {
		replicas = int(*sts.Spec.Replicas)
	}
	c.metrics.replicas.Set(float64(replicas))
	if replicas == 0 {
		// No reader runs; keep the last assignment for when it scales up.
		return nil
	}
	data, sum, err := AssignmentData(sts.Name, replicas)
	if err != nil {
		return fmt.Errorf("statefulset %s with %d replicas: %w", sts.Name, replicas, err)
	}
	if err := c.applyConfigMap(ctx, sts, data, replicas); err != nil {
		return err
	}
	return c.applyChecksum(ctx, sts, sum, replicas)
}

// applyConfigMap makes the ConfigMap hold data, creating it when missing.
func (c *Controller) applyConfigMap(ctx context.Context, sts *appsv1.StatefulSet, data []byte, replicas int) error {
	cms := c.client.CoreV1().ConfigMaps(c.cfg.Namespace)
	cm, err := cms.Get(ctx, c.cfg.ConfigMap, metav1.GetOptions{})
	switch err = translate(err); {
	case errors.Is(err, ports.ErrNotFound):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name:      c.cfg.ConfigMap,
				Namespace: c.cfg.Namespace,
				Labels:    map[string]string{ManagedByLabel: FieldManager},
				// Deleted with the StatefulSet. Not a controller reference
				// with blockOwnerDeletion, which would need more RBAC.
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "apps/v1", Kind: "StatefulSet", Name: sts.Name, UID: sts.UID,
				}},
			},
			Data: map[string]string{domain.AssignmentKey: string(data)},
		}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
			return fmt.Errorf("create configmap %s: %w", c.cfg.ConfigMap, translate(err))
		}
	case err != nil:
		return fmt.Errorf("get configmap %s: %w", c.cfg.ConfigMap, err)
	case cm.Data[domain.AssignmentKey] == string(data):
		return nil
	default:
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[domain.AssignmentKey] = string(data)
		// Update, not patch: the resourceVersion from the Get makes a
		// concurrent writer (a helm upgrade, a second leader during a
		// handover) a conflict instead of a lost update.
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
			return fmt.Errorf("update configmap %s: %w", c.cfg.ConfigMap, translate(err))
		}
	}
	c.metrics.configMaps.Inc()
	c.logger.Info("partition assignment written", "configmap", c.cfg.ConfigMap, "replicas", replicas, "assignment", string(data))
	return nil
}

// applyChecksum sets the pod-template annotation to sum unless it already is.
func (c *Controller) applyChecksum(ctx context.Context, sts *appsv1.StatefulSet, sum string, replicas int) error {
	if sts.Spec.Template.Annotations[ChecksumAnnotation] == sum {
		return nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": sts.ResourceVersion},
		"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{ChecksumAnnotation: sum},
		}}},
	})
	if err != nil {
		return fmt.Errorf("encode patch: %w", err)
	}
	_, err = c.client.AppsV1().StatefulSets(c.cfg.Namespace).Patch(ctx, sts.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return fmt.Errorf("patch statefulset %s: %w", sts.Name, translate(err))
	}
	c.metrics.rollouts.Inc()
	c.logger.Info("readers rolling onto the new assignment", "replicas", replicas, "checksum", sum)
	return nil
}

// Check reports whether the controller is working: under RunElected, a
// standby is fine, and the leader must have synced its caches; under Run the
// caches must be synced.
func (c *Controller) Check(context.Context) error {
	if c.elected.Load() && !c.leading.Load() {
		return nil // standby: ready to take over
	}
	if !c.synced.Load() {
		return fmt.Errorf("%w: informer caches not synced", ports.ErrUnavailable)
	}
	return nil
}
