// One binary for the Kubernetes components, chosen by the name it is invoked as
// (argv[0]), as hyperkube once did: the build links it as kube-apiserver,
// kube-controller-manager, kube-scheduler, and for the real node kubelet and
// kube-proxy. One link instead of five saves minutes and ~300 MB on a cold build.
package main

import (
	_ "time/tzdata" // CronJob time zones, as upstream main packages do

	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	commands := map[string]func() *cobra.Command{
		"kube-apiserver":          apiserver.NewAPIServerCommand,
		"kube-controller-manager": controllermanager.NewControllerManagerCommand,
		"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
		"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
		"kube-proxy":              proxy.NewProxyCommand,
	}
	name := filepath.Base(os.Args[0])
	newCommand, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "invoke as one of kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (got %q)\n", name)
		os.Exit(2)
	}
	os.Exit(cli.Run(newCommand()))
}
