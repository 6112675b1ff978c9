// Command deployer is `mage deploy` from the image on, built as a program of
// its own so a test can kill it outright (SIGKILL) at any point and run it
// again: the same deploy.Run the Deploy target runs (the deploy lease, Bake
// from the image receipt, Launch, Swap, then the grace), with the
// configuration read from the blog's _config.yml and DEPLOY_* as mage
// reads it, and its waits paced for an emulator instead of AWS.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/deploy"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/logx"
	"github.com/unikernel-blog/blog/magefiles/swap"
)

func main() {
	dir := flag.String("dir", ".", "the blog's root")
	poll := flag.Duration("poll", 5*time.Millisecond, "every wait's poll interval")
	flag.Parse()
	c, err := config.Load(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := logx.Step("deploy")
	r, err := deploy.Run(context.Background(), deploy.Options{
		Config: c, Log: log,
		Bake:   &bake.Options{Log: logx.Step("bake"), WaitDelay: *poll, RetryBase: *poll},
		Launch: launch.Options{Log: logx.Step("launch"), HealthPoll: *poll, WaitDelay: *poll},
		Swap:   swap.Options{Log: logx.Step("swap"), WaitDelay: *poll},
		Lease:  fleet.LeaseOptions{Poll: *poll},
	})
	if r != nil {
		log.Info(r.Timeline.Line())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	log.Info(swap.DeploySummary(r.Launch, r.Swap))
}
