package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/task"
)

// TestExampleConfig keeps the example configuration (deploy/examples)
// loadable.
func TestExampleConfig(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"iked.example.yaml", "secrets.example.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "iked.example.yaml"), task.ConfigChecker{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Connections) != 2 || cfg.Connections["site-b"].Children["lan"].StartAction != "trap" {
		t.Errorf("example: %+v", cfg.Connections)
	}
}
