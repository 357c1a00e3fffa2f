package app

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/tickflow/tickflow/sinks"
)

// runner is what runs a sink's consumer: a *bus.Runtime.
type runner interface {
	Run(ctx context.Context) error
}

// runSinks runs every sink's service and runtime until ctx ends or one of
// them fails. A sink's service starts before its runtime (which, for a
// sinks.Starter, waits until the service says it serves), and services
// stop only after every runtime has returned, so the final batch each
// runtime writes at shutdown can still use them.
func runSinks(ctx context.Context, built []builtSink) error {
	// Services outlive ctx: they are stopped below, once the runtimes are done.
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServices()
	rtCtx, stopRuntimes := context.WithCancel(ctx)
	defer stopRuntimes()

	var (
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		stopRuntimes()
	}
	var services sync.WaitGroup
	ready := make([]<-chan struct{}, len(built))
	for i, b := range built {
		svc, ok := b.sink.(sinks.Service)
		if !ok {
			continue
		}
		if st, ok := b.sink.(sinks.Starter); ok {
			ready[i] = st.Started()
		}
		services.Add(1)
		go func() {
			defer services.Done()
			// A service that ends on its own, early or late, fails the
			// run, which also releases a runtime still waiting for it.
			err := svc.Run(svcCtx)
			switch {
			case err != nil && !errors.Is(err, context.Canceled):
				fail(fmt.Errorf("sink %s: %w", b.name, err))
			case svcCtx.Err() == nil:
				fail(fmt.Errorf("sink %s: service stopped while its runtime runs", b.name))
			}
		}()
	}
	var runtimes errgroup.Group
	for i, b := range built {
		runtimes.Go(func() error {
			if ready[i] != nil {
				select {
				case <-ready[i]:
				case <-rtCtx.Done():
					return nil
				}
			}
			if rtCtx.Err() != nil {
				return nil // stopped before it could start
			}
			if err := b.rt.Run(rtCtx); err != nil {
				fail(err)
			}
			return nil
		})
	}
	_ = runtimes.Wait()
	stopServices()
	services.Wait()
	return errors.Join(errs...)
}
