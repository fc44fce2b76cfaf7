package kube

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// RunElected campaigns for the Lease ec.LeaseName and runs the controller
// (Run) while it holds it; on losing the lease it stops the controller and
// campaigns again. It returns nil when ctx is done, after the controller
// stopped and the lease was released, so a standby takes over at its next
// retry instead of waiting for the lease to expire.
//
// Ordering is what makes "only the leader writes" hold: client-go's elector
// releases the lease as soon as its own context ends, so the elector gets a
// context that RunElected cancels only after the controller's workers have
// returned. On a lost renewal client-go cancels the leading context itself,
// RenewDeadline before another candidate may take the lease.
func (c *Controller) RunElected(ctx context.Context, ec ElectionConfig) error {
	ec = ec.withDefaults()
	if ec.Identity == "" {
		return fmt.Errorf("leader election: identity is required")
	}
	c.elected.Store(true)
	defer c.elected.Store(false)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: ec.LeaseName, Namespace: c.cfg.Namespace},
		Client:     c.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: ec.Identity},
	}
	logger := c.logger.With("lease", ec.LeaseName, "identity", ec.Identity)
	for ctx.Err() == nil {
		if err := c.term(ctx, lock, ec); err != nil {
			return err
		}
	}
	logger.Info("leader election stopped")
	return nil
}

// term is one campaign: it returns when ctx is done or after a lost lease.
func (c *Controller) term(ctx context.Context, lock resourcelock.Interface, ec ElectionConfig) error {
	// leading receives the elector's leading context. Buffered: the elector
	// calls OnStartedLeading at most once per Run, from its own goroutine,
	// and must not block on us.
	leading := make(chan context.Context, 1)
	// The elector's context is not derived from ctx, so shutdown does not
	// release the lease before the controller stopped (see RunElected).
	elCtx, elCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer elCancel()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            ec.LeaseName,
		LeaseDuration:   ec.LeaseDuration,
		RenewDeadline:   ec.RenewDeadline,
		RetryPeriod:     ec.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) { leading <- lctx },
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				if id != ec.Identity {
					c.logger.Info("following leader", "leader", id, "identity", ec.Identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	done := make(chan struct{}) // closed when the elector's Run returned
	go func() {
		defer close(done)
		le.Run(elCtx)
	}()
	defer func() {
		elCancel() // releases the lease if we hold it
		<-done
	}()

	select {
	case <-ctx.Done():
		return nil
	case <-done:
		return nil // the elector gave up (only on elCtx); campaign again
	case lctx := <-leading:
		c.logger.Info("leading: controller starting", "identity", ec.Identity)
		runCtx, cancel := context.WithCancel(lctx)
		stop := context.AfterFunc(ctx, cancel)
		c.leading.Store(true)
		c.metrics.leader.Set(1)
		err := c.Run(runCtx)
		c.metrics.leader.Set(0)
		c.leading.Store(false)
		stop()
		cancel()
		if ctx.Err() == nil {
			c.logger.Warn("lost the lease: controller stopped; campaigning again", "identity", ec.Identity)
		}
		return err
	}
}
