// Package crds holds the API packages controller-gen reads, so that go.mod keeps them.
package crds

import (
	_ "github.com/argoproj/argo-workflows/v4/pkg/apis/workflow/v1alpha1"
	_ "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	_ "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
)
