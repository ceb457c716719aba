// Command controller is Tekton Chains' controller (github.com/tektoncd/chains
// cmd/controller at the version go.mod pins) with one difference: it reads the
// signing keys from the directory -signing-secrets names instead of
// /etc/signing-secrets. Upstream hard-codes that path as a constant in
// pkg/reconciler/taskrun and pkg/reconciler/pipelinerun (where a Deployment
// mounts the signing-secrets Secret); the cluster test runs Chains as a
// process on the test's machine, where it must not write under /etc. So the
// two constructors below are upstream's NewNamespacesScopedController with
// the path as a parameter. And its health probes listen on -health-port:
// knative's sharedmain binds them to :8080, a constant, which a Tekton
// controller beside it already holds. Everything else is upstream's main.
//
// Copyright 2020-2021 The Tekton Authors, Apache License 2.0 (the parts taken
// from cmd/controller/main.go and pkg/reconciler/{taskrun,pipelinerun}/controller.go).
package main

import (
	"context"
	"flag"
	"strings"

	"github.com/tektoncd/chains/pkg/chains"
	"github.com/tektoncd/chains/pkg/chains/storage"
	"github.com/tektoncd/chains/pkg/config"
	"github.com/tektoncd/chains/pkg/pipelinerunmetrics"
	"github.com/tektoncd/chains/pkg/reconciler"
	"github.com/tektoncd/chains/pkg/reconciler/pipelinerun"
	"github.com/tektoncd/chains/pkg/reconciler/taskrun"
	"github.com/tektoncd/chains/pkg/taskrunmetrics"
	pipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client"
	pipelineruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/pipelinerun"
	taskruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun"
	pipelinerunreconciler "github.com/tektoncd/pipeline/pkg/client/injection/reconciler/pipeline/v1/pipelinerun"
	taskrunreconciler "github.com/tektoncd/pipeline/pkg/client/injection/reconciler/pipeline/v1/taskrun"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	kubeclient "knative.dev/pkg/client/injection/kube/client"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"
	"knative.dev/pkg/injection/sharedmain"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/signals"

	// As upstream's main: every signing provider and KMS plugin, and every
	// provenance format.
	_ "github.com/sigstore/cosign/v2/pkg/providers/all"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
	_ "github.com/tektoncd/chains/pkg/chains/formats/all"
)

func main() {
	flag.IntVar(&controller.DefaultThreadsPerController, "threads-per-controller", controller.DefaultThreadsPerController, "Threads (goroutines) to create per controller")
	namespaceList := flag.String("namespace", "", "Comma-separated list of namespaces to restrict informer to. Optional, if empty defaults to all namespaces.")
	healthPort := flag.Int("health-port", injection.HealthCheckDefaultPort, "Port of the readiness and liveness probes (/readiness, /health)")
	secretPath := flag.String("signing-secrets", taskrun.SecretPath, "Directory holding the signing keys (the signing-secrets Secret's files: cosign.key, cosign.password or x509.pem)")

	// This also calls flag.Parse().
	cfg := injection.ParseAndGetRESTConfigOrDie()

	ctx := signals.NewContext()
	logger := logging.FromContext(ctx)

	var namespaces []string
	if *namespaceList != "" {
		namespaces = strings.Split(strings.ReplaceAll(*namespaceList, " ", ""), ",")
		logger.Infof("controller is scoped to the following namespaces: %s\n", namespaces)
	}
	logger.Infof("signing keys are read from %s", *secretPath)

	if cfg.QPS == 0 {
		cfg.QPS = 2 * rest.DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = rest.DefaultBurst
	}
	cfg.QPS = 2 * cfg.QPS
	cfg.Burst = 2 * cfg.Burst

	go func() {
		if err := injection.ServeHealthProbes(ctx, *healthPort); err != nil {
			logger.Fatalw("health probes", "error", err)
		}
	}()
	ctx = sharedmain.WithHealthProbesDisabled(ctx)
	sharedmain.MainWithConfig(ctx, "watcher", cfg,
		taskRunController(namespaces, *secretPath), pipelineRunController(namespaces, *secretPath))
}

// backendsOnConfig is the config-store callback both constructors share:
// on every chains-config change it stops the old storage watchers and starts
// the backends the new configuration names on signer.
func backendsOnConfig(ctx context.Context, signer *chains.ObjectSigner) func(string, interface{}) {
	logger := logging.FromContext(ctx)
	watcherStop := make(chan bool)
	return func(_ string, value interface{}) {
		select {
		case watcherStop <- true:
			logger.Info("sent close event to WatchBackends()...")
		default:
			logger.Info("could not send close event to WatchBackends()...")
		}
		cfg := *value.(*config.Config)
		backends, err := storage.InitializeBackends(ctx, pipelineclient.Get(ctx), kubeclient.Get(ctx), cfg)
		if err != nil {
			logger.Error(err)
		}
		signer.Backends = backends
		if err := storage.WatchBackends(ctx, watcherStop, signer.Backends, cfg); err != nil {
			logger.Error(err)
		}
	}
}

// taskRunController is taskrun.NewNamespacesScopedController with secretPath.
func taskRunController(namespaces []string, secretPath string) func(context.Context, configmap.Watcher) *controller.Impl {
	return func(ctx context.Context, cmw configmap.Watcher) *controller.Impl {
		logger := logging.FromContext(ctx)
		taskRunInformer := taskruninformer.Get(ctx)
		pipelineClient := pipelineclient.Get(ctx)
		signer := &chains.ObjectSigner{
			SecretPath:        secretPath,
			Pipelineclientset: pipelineClient,
			Recorder:          taskrunmetrics.Get(ctx),
		}
		c := &taskrun.Reconciler{TaskRunSigner: signer, Pipelineclientset: pipelineClient}
		impl := taskrunreconciler.NewImpl(ctx, c, func(_ *controller.Impl) controller.Options {
			cfgStore := config.NewConfigStore(logger, backendsOnConfig(ctx, signer))
			cfgStore.WatchConfigs(cmw)
			return controller.Options{
				SkipStatusUpdates: true,
				ConfigStore:       cfgStore,
				FinalizerName:     "chains.tekton.dev/taskrun",
			}
		})
		if _, err := taskRunInformer.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
			FilterFunc: reconciler.TaskRunInformerFilterFunc(namespaces),
			Handler:    controller.HandleAll(impl.Enqueue),
		}); err != nil {
			logger.Errorf("adding event handler for taskrun controller's taskrun informer encountered error: %v", err)
		}
		return impl
	}
}

// pipelineRunController is pipelinerun.NewNamespacesScopedController with secretPath.
func pipelineRunController(namespaces []string, secretPath string) func(context.Context, configmap.Watcher) *controller.Impl {
	return func(ctx context.Context, cmw configmap.Watcher) *controller.Impl {
		logger := logging.FromContext(ctx)
		pipelineRunInformer := pipelineruninformer.Get(ctx)
		taskRunInformer := taskruninformer.Get(ctx)
		pipelineClient := pipelineclient.Get(ctx)
		signer := &chains.ObjectSigner{
			SecretPath:        secretPath,
			Pipelineclientset: pipelineClient,
			Recorder:          pipelinerunmetrics.Get(ctx),
		}
		c := &pipelinerun.Reconciler{
			PipelineRunSigner: signer,
			Pipelineclientset: pipelineClient,
			TaskRunLister:     taskRunInformer.Lister(),
		}
		impl := pipelinerunreconciler.NewImpl(ctx, c, func(_ *controller.Impl) controller.Options {
			cfgStore := config.NewConfigStore(logger, backendsOnConfig(ctx, signer))
			cfgStore.WatchConfigs(cmw)
			return controller.Options{
				SkipStatusUpdates: true,
				ConfigStore:       cfgStore,
				FinalizerName:     "chains.tekton.dev/pipelinerun",
			}
		})
		c.Tracker = impl.Tracker
		if _, err := pipelineRunInformer.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
			FilterFunc: reconciler.PipelineRunInformerFilterFunc(namespaces),
			Handler:    controller.HandleAll(impl.Enqueue),
		}); err != nil {
			logger.Errorf("adding event handler for pipelinerun controller's pipelinerun informer encountered error: %v", err)
		}
		if _, err := taskRunInformer.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
			FilterFunc: reconciler.TaskRunInformerFilterFuncWithOwnership(namespaces),
			Handler:    controller.HandleAll(impl.EnqueueControllerOf),
		}); err != nil {
			logger.Errorf("adding event handler for pipelinerun controller's taskrun informer encountered error: %v", err)
		}
		return impl
	}
}
