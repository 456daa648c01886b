// Command siganteng runs SIGANTENG: the HTTP API, the worker, or both.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/siganteng/siganteng/internal/cli"
)

func main() {
	if err := cli.Run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "siganteng:", err)
		os.Exit(1)
	}
}
