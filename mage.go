//go:build ignore

// Runs the targets in magefiles/ without installing mage: go run mage.go TARGET.
package main

import (
	"os"

	"github.com/magefile/mage/mage"
)

func main() { os.Exit(mage.Main()) }
